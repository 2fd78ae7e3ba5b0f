"""How memories are scored: recall ranking, retention (eviction order) and promotion.

All three use the same recency factor, an exponential decay of the time since the item was
last written or recalled::

    recency   = 0.5 ** ((now - accessed_at) / recency_half_life_s)      # 1.0 when just touched

Recall ranks candidates by::

    recall    = max(cosine(query, item), 0) × importance × recency

Capacity eviction removes the item with the lowest::

    retention = importance × recency × access_count

``access_count`` starts at 1 (the write counts as an access) and grows by one per recall, so a
new item is never worth zero and an item recalled often outlives one nobody asked for. Ties go to
the oldest item. Because ``now`` is common to every item of a tier, the order of ``retention`` is
the order of ``log(importance) + log(access_count) + accessed_at × ln 2 / half_life`` — a number
that does not change with time, kept in a Redis sorted set so ``ZPOPMIN`` finds the victim.

A ``short_term`` item is promoted to ``long_term`` once ``access_count - 1`` (its recalls)
reaches ``promote_after_accesses`` or its importance reaches ``promote_importance``; promotion
happens when it is recalled and during consolidation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LN2 = math.log(2.0)


def recency(accessed_at: float, now: float, half_life_s: float) -> float:
    """The recency factor in (0, 1]: 1 when just accessed, halving every ``half_life_s``."""
    age = max(now - accessed_at, 0.0)
    return float(0.5 ** (age / half_life_s))


def retention(
    importance: float, access_count: int, accessed_at: float, now: float, half_life_s: float
) -> float:
    """How much an item is worth keeping; the lowest of a full tier is evicted."""
    return importance * recency(accessed_at, now, half_life_s) * max(access_count, 1)


def retention_key(importance: float, access_count: int, accessed_at: float, half_life_s: float) -> float:
    """A time-independent number that orders items exactly like :func:`retention` at any ``now``."""
    if importance <= 0.0:
        return -math.inf
    return math.log(importance) + math.log(max(access_count, 1)) + accessed_at * LN2 / half_life_s


@dataclass(frozen=True)
class RecallScore:
    """The factors of one recall score and the sentence that explains them."""

    similarity: float
    importance: float
    recency: float
    score: float
    why: str


def recall_score(
    similarity: float,
    importance: float,
    accessed_at: float,
    now: float,
    half_life_s: float,
    detail: str | None = None,
) -> RecallScore:
    """Score one candidate for a recall and say why it got that score (``detail``: how the similarity
    was made, e.g. its cosine and keyword parts)."""
    sim = max(similarity, 0.0)
    rec = recency(accessed_at, now, half_life_s)
    score = sim * importance * rec
    how = f" ({detail})" if detail else ""
    why = (
        f"similarity {sim:.3f}{how} × importance {importance:.2f} × recency {rec:.3f} "
        f"(last used {describe_age(now - accessed_at)} ago, half-life {describe_age(half_life_s)})"
        f" = {score:.3f}"
    )
    return RecallScore(similarity=sim, importance=importance, recency=rec, score=score, why=why)


def should_promote(
    tier: str, importance: float, access_count: int, after_accesses: int, at_importance: float
) -> bool:
    """True when a short_term item has been recalled often enough or is important enough."""
    if tier != "short_term":
        return False
    return (access_count - 1) >= after_accesses or importance >= at_importance


def describe_age(seconds: float) -> str:
    """A short human duration: ``42 s``, ``3 min``, ``5 h``, ``2 d``."""
    s = max(seconds, 0.0)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
