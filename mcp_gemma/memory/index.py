"""The in-process view of one scope's memories: a vector index, filter metadata, the working cache.

Redis is the source of truth; a :class:`ScopeIndex` is rebuilt from it on first use and whenever
the scope's version counter moved without this process knowing (another replica wrote).

The index holds each unit embedding scaled by the item's importance (at least ``MIN_SCALE``) under
the inner-product metric, so one scan ranks by ``similarity × importance`` — an upper bound of the
recall score that is tight whenever recency is close to 1 — and ``similarity = ip / scale``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from mcp_gemma.memory.config import TierName, TierSettings
from mcp_gemma.memory.records import MemoryRecord, key_to_id

if TYPE_CHECKING:
    from mcp_gemma.native import BM25Index, TtlCache, VectorIndex

KeyArray = npt.NDArray[np.uint64]
MIN_SCALE = 1e-3  # importance 0 still keeps a direction, so its similarity can be reported


def scale_of(importance: float) -> float:
    """The factor an item's unit embedding is stored with."""
    return max(importance, MIN_SCALE)


@dataclass(frozen=True)
class FilterMeta:
    """What recall filters on, kept in memory so filters need no Redis round trip."""

    tier: TierName
    session: str | None
    tags: frozenset[str]
    created: float
    scale: float
    occurred: float | None = None


@dataclass(frozen=True)
class RecallFilter:
    """Which memories of a scope a recall may return."""

    tiers: frozenset[str]
    tags: frozenset[str] = frozenset()
    session: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    occurred_after: float | None = None
    occurred_before: float | None = None

    def only_tiers(self) -> bool:
        """True when the filter restricts nothing but the tier."""
        return (
            not self.tags
            and self.session is None
            and self.created_after is None
            and self.created_before is None
            and self.occurred_after is None
            and self.occurred_before is None
        )

    def accepts(self, meta: FilterMeta) -> bool:
        """True when ``meta`` passes every condition."""
        if meta.tier not in self.tiers:
            return False
        if self.session is not None and meta.session != self.session:
            return False
        if self.tags and not self.tags <= meta.tags:
            return False
        if self.created_after is not None and meta.created < self.created_after:
            return False
        if self.created_before is not None and meta.created > self.created_before:
            return False
        if self.occurred_after is not None or self.occurred_before is not None:
            at = meta.occurred
            if at is None:
                return False
            if self.occurred_after is not None and at < self.occurred_after:
                return False
            if self.occurred_before is not None and at > self.occurred_before:
                return False
        return True


class ScopeIndex:
    """Vectors and filter metadata of every memory of one scope, plus its working-tier cache."""

    def __init__(
        self,
        scope: str,
        dim: int,
        working: TierSettings,
        headroom: int,
        quantize: bool | Literal["auto"] = False,
        quantize_min_items: int = 5_000,
        analyzer: Literal["plain", "english"] = "english",
    ) -> None:
        from mcp_gemma import native

        self.scope = scope
        self.version = -1
        self.vectors: VectorIndex = native.VectorIndex(dim, metric="ip")
        self.analyzer = analyzer
        self.keywords: BM25Index = native.BM25Index(analyzer=analyzer)  # contents, for recall's keyword side
        self.meta: dict[int, FilterMeta] = {}
        self.accessed: dict[int, float] = {}  # last access as this process saw it (ranking only)
        self.by_tier: dict[str, set[int]] = {}
        # Headroom for one whole batch: the cache's own LRU must never pick a victim before the
        # retention-ordered eviction in Redis has chosen the right one.
        self.working: TtlCache = native.TtlCache(working.capacity + headroom, working.ttl_s)
        self._tier_arrays: dict[str, KeyArray] = {}
        self.quantize = quantize
        self.quantize_min_items = quantize_min_items

    def wants_int8(self, rows: int, now: bool) -> bool:
        """Whether the vector index should scan int8 codes first (``memory.quantize``, with hysteresis)."""
        from mcp_gemma import native

        return native.auto_on(self.quantize, rows, self.quantize_min_items, now)

    def _retune(self) -> None:
        want = self.wants_int8(len(self.meta), self.vectors.quantized)
        if want != self.vectors.quantized:
            self.vectors.set_quantized(want)

    def __len__(self) -> int:
        return len(self.meta)

    def put(self, records: Iterable[MemoryRecord], now: float) -> None:
        """Add or replace records (each must carry its embedding)."""

        recs = [r for r in records if r.embedding is not None]
        if not recs:
            return
        keys = np.fromiter((r.key for r in recs), dtype=np.uint64, count=len(recs))
        vecs = np.stack([r.embedding for r in recs if r.embedding is not None]).astype(np.float32, copy=False)
        scales = np.array([scale_of(r.importance) for r in recs], dtype=np.float32)
        self.vectors.add(keys, np.ascontiguousarray(vecs * scales[:, None]))
        self.keywords.add_many(keys.tolist(), [r.content for r in recs])
        for r in recs:
            old = self.meta.get(r.key)
            if old is not None and old.tier != r.tier:
                self._untier(r.key, old.tier)
            self.meta[r.key] = FilterMeta(
                r.tier, r.session, frozenset(r.tags), r.created, scale_of(r.importance), r.occurred
            )
            self.accessed[r.key] = r.accessed
            self.by_tier.setdefault(r.tier, set()).add(r.key)
            self._tier_arrays.pop(r.tier, None)
            if r.tier == "working":
                self.cache(r, now)
        self._retune()

    def cache(self, record: MemoryRecord, now: float) -> None:
        """Mirror a working-tier record into the in-process TTL cache for its remaining lifetime."""
        ttl = None if record.expires is None else max(record.expires - now, 0.001)
        self.working.set(record.id, record.to_cache_bytes(), ttl)

    def cached(self, key: int) -> MemoryRecord | None:
        """A working-tier record from the cache, or None when it expired or was never there."""
        raw = self.working.get(key_to_id(key))
        return None if raw is None else MemoryRecord.from_cache_bytes(key, raw)

    def retier(self, key: int, tier: TierName) -> None:
        """Move a record to another tier (promotion) without touching its vector."""
        old = self.meta.get(key)
        if old is None:
            return
        self._untier(key, old.tier)
        self.meta[key] = FilterMeta(tier, old.session, old.tags, old.created, old.scale, old.occurred)
        self.by_tier.setdefault(tier, set()).add(key)
        self._tier_arrays.pop(tier, None)

    def drop(self, keys: Iterable[int]) -> None:
        """Forget records (evicted, expired, merged or cleared)."""
        gone = [k for k in keys if k in self.meta]
        if not gone:
            return
        self.vectors.remove(np.array(gone, dtype=np.uint64))
        for k in gone:
            self.keywords.remove(k)
            meta = self.meta.pop(k)
            self.accessed.pop(k, None)
            self._untier(k, meta.tier)
        self._retune()

    def _untier(self, key: int, tier: str) -> None:
        self.by_tier.get(tier, set()).discard(key)
        self._tier_arrays.pop(tier, None)
        if tier == "working":
            self.working.delete(key_to_id(key))

    def tier_keys(self, tier: str) -> KeyArray:
        """The keys of one tier as an array (cached until the tier changes)."""
        arr = self._tier_arrays.get(tier)
        if arr is None:
            members = self.by_tier.get(tier, set())
            arr = np.fromiter(members, dtype=np.uint64, count=len(members))
            self._tier_arrays[tier] = arr
        return arr

    def allowed(self, flt: RecallFilter) -> KeyArray | None:
        """Keys that pass ``flt``; None means every key (no filter needed)."""
        present = {t for t in self.by_tier if self.by_tier[t]}
        if flt.only_tiers():
            if present <= flt.tiers:
                return None
            parts = [self.tier_keys(t) for t in sorted(flt.tiers)]
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
        keys = [k for t in flt.tiers for k in self.by_tier.get(t, ()) if flt.accepts(self.meta[k])]
        return np.array(keys, dtype=np.uint64)

    def keyword_search(self, query: str, k: int, allow: KeyArray | None) -> list[tuple[int, float]]:
        """The ``k`` keys among ``allow`` (all when None) with the highest BM25 score for ``query``."""
        if k <= 0 or not self.meta:
            return []

        ids, scores = self.keywords.search(query, k, allow)
        return [(int(i), float(s)) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]

    def search(
        self, query: npt.NDArray[np.float32], k: int, allow: KeyArray | None
    ) -> list[tuple[int, float]]:
        """The ``k`` keys among ``allow`` (all when None) with the highest similarity × importance."""
        if k <= 0 or not self.meta:
            return []

        ids, scores = self.vectors.search(query, k, allow)
        return [(int(i), float(s)) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]
