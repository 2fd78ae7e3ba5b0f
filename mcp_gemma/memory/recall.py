"""Recall: rank a scope's memories for a query and count the access on what is returned."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import anyio
import numpy as np

from mcp_gemma import native
from mcp_gemma.aio import overlapped
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.fusion import COVERAGE_SHARE, adaptive_weight
from mcp_gemma.memory.config import TIER_NAMES, TierName
from mcp_gemma.memory.index import RecallFilter, ScopeIndex
from mcp_gemma.memory.models import RecallHit, RecallResult
from mcp_gemma.memory.policy import LN2, recall_score, recency, should_promote
from mcp_gemma.memory.records import META_FIELDS, SHARED_AGENT, MemoryRecord, key_to_id
from mcp_gemma.memory.repository import MemoryRepository
from mcp_gemma.memory.timeparse import TimeRange, time_range
from mcp_gemma.store.redis import redis_guard

SEARCH_IN_THREAD_ABOVE = 20_000  # rows: below this a scan takes well under a millisecond
FETCH_SPARE = 8  # candidates past 2k sent to the fetch-and-touch script (see _fetch_and_touch)
Match = Literal["hybrid", "vector", "keyword"]


@dataclass(frozen=True)
class _Query:
    """One recall's query in every form the ranking needs."""

    text: str
    vector: np.ndarray[Any, Any]
    match: Match
    when: TimeRange | None
    time_boost: float
    chunk_coverage: bool  # memory.fusion == "coverage": each memory's own coverage is keyword evidence


class _Relevance(NamedTuple):
    """How one candidate matches: the fused similarity and its parts (for ``why``).

    A tuple, not a frozen dataclass: one is made per shortlisted candidate (hundreds per recall),
    and a frozen dataclass's ``__init__`` cost ~1 µs each of that."""

    similarity: float
    cosine: float
    keywords: float | None
    weight: float
    in_time: bool

    def detail(self) -> str:
        parts = [f"cosine {self.cosine:.3f}"]
        if self.keywords is not None and self.weight > 0:
            parts.append(f"keywords {self.keywords:.3f} at weight {self.weight:.2f}")
        if self.in_time:
            parts.append("in the asked time")
        return ", ".join(parts)


@redis_guard
async def recall(
    service: MemoryRepository,
    query: str,
    *,
    k: int = 5,
    tiers: Sequence[str] | None = None,
    tags: Sequence[str] = (),
    session_id: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
    agent_id: str = "default",
    include_shared: bool = True,
    min_score: float = 0.0,
    match: Match = "hybrid",
    occurred_after: float | None = None,
    occurred_before: float | None = None,
    time_aware: bool = True,
    touch: bool = True,
) -> RecallResult:
    """Memories most relevant to ``query``: similarity × importance × recency, with reasons.

    A recall counts as an access (count, TTL, hit statistics, promotion); ``touch=False`` reads only,
    for callers such as research_query that promise to change nothing.

    ``similarity`` fuses cosine and BM25 as ``memory.fusion`` says (``match="hybrid"``; "adaptive"
    by default, measured better here than "coverage"), or is
    one of them alone; with ``time_aware`` a time the query names ("in March") adds
    ``memory.time_match_boost`` to memories that happened then (``occurred_at``, else ``created_at``).
    """
    if not query.strip():
        raise InvalidInputError("query is empty; say what to recall")
    wanted: list[TierName] = [service.check_tier(t) for t in tiers] if tiers else list(TIER_NAMES)
    flt = RecallFilter(
        frozenset(wanted),
        frozenset(tags),
        session_id,
        created_after,
        created_before,
        occurred_after,
        occurred_before,
    )
    scopes = [agent_id] + ([SHARED_AGENT] if include_shared and agent_id != SHARED_AGENT else [])
    now = time.time()
    vector, indexes = await overlapped(
        service.embeddings.embed_one(query), service.prepare_many(scopes, wanted, now)
    )
    q = _Query(
        query,
        vector,
        match,
        time_range(query, now) if time_aware else None,
        service.settings.time_match_boost,
        service.settings.fusion == "coverage",
    )
    scored: list[tuple[float, RecallHit, MemoryRecord]] = []
    candidates = 0
    pools = []
    for idx in indexes:
        allow = idx.allowed(flt)
        pool = len(idx) if allow is None else len(allow)
        candidates += pool
        pools.append((idx, allow, pool))
    busy = [p for p in pools if p[2] > 0]
    if touch and len(busy) == 1 and min_score <= 0.0 and k > 0:
        # One scope and no floor: the winners are the first k live candidates in ranked order, so
        # reading them and counting the access share one round trip.
        idx, allow, pool = busy[0]
        ranked = await _shortlist(service, idx, q, k, allow, pool, now)
        hits = await _fetch_and_touch(service, idx, ranked, k, wanted, scopes, now)
        return RecallResult(query=query, hits=hits, tiers=wanted, agent_ids=scopes, candidates=candidates)
    for idx, allow, pool in pools:
        scored.extend(await _rank(service, idx, q, k, allow, pool, now))
    scored.sort(key=lambda s: -s[0])
    top = [s for s in scored if s[0] >= min_score][:k]
    hits = await _touch_hits(service, top, wanted, scopes, now) if touch else [hit for _, hit, _ in top]
    return RecallResult(query=query, hits=hits, tiers=wanted, agent_ids=scopes, candidates=candidates)


async def _rank(
    service: MemoryRepository,
    idx: ScopeIndex,
    q: _Query,
    k: int,
    allow: Any,
    pool: int,
    now: float,
) -> list[tuple[float, RecallHit, MemoryRecord]]:
    """Exact top-k by the full score, ranked in memory; only the winners are read from Redis.

    See :func:`_shortlist` for why the shortlist holds the exact top k. Recency here uses this
    process's view of the last access; the reported score uses the values read back from Redis.
    """
    if pool == 0:
        return []
    half_life = service.settings.recency_half_life_s
    ranked = await _shortlist(service, idx, q, k, allow, pool, now)
    out: list[tuple[float, RecallHit, MemoryRecord]] = []
    pos = 0
    while len(out) < k and pos < len(ranked):  # more than one round only when winners expired meanwhile
        batch = ranked[pos : pos + k - len(out)]
        pos += len(batch)
        records = await service.fetch(idx, [key for _, key, _ in batch])
        for _, key, rel in batch:
            rec = records.get(key)
            if rec is None or key not in idx.meta:
                continue
            out.append(_scored(rec, rel, now, half_life))
    out.sort(key=lambda s: -s[0])
    return out


def _scored(
    rec: MemoryRecord, rel: _Relevance, now: float, half_life: float
) -> tuple[float, RecallHit, MemoryRecord]:
    """A candidate's recall score (from the values read back from Redis) and its hit."""
    s = recall_score(rel.similarity, rec.importance, rec.accessed, now, half_life, detail=rel.detail())
    hit = RecallHit(
        item=rec.to_item(),
        score=s.score,
        similarity=s.similarity,
        cosine=round(rel.cosine, 6),
        keyword_score=None if rel.keywords is None else round(rel.keywords, 6),
        time_match=rel.in_time,
        recency=s.recency,
        why=s.why,
    )
    return s.score, hit, rec


def _relevance(
    idx: ScopeIndex, q: _Query, vec: list[tuple[int, float]], kw: list[tuple[int, float]]
) -> tuple[dict[int, _Relevance], float, float]:
    """Fused similarity of every candidate of both rankings, the BM25 weight and the BM25 bound."""
    ips = dict(vec)
    keys = list(dict.fromkeys([key for key, _ in vec] + [key for key, _ in kw]))
    arr = np.asarray(keys, dtype=np.uint64)
    bm = idx.keywords.scores(q.text, arr).tolist()
    bound = idx.keywords.max_score(q.text)
    covers: list[float] | None = None
    if q.match == "hybrid" and q.chunk_coverage:
        covers = idx.keywords.coverage_many(q.text, arr).tolist()
        cover = covers[keys.index(kw[0][0])] if kw else 0.0
    elif q.match == "hybrid":
        cover = idx.keywords.coverage(q.text, kw[0][0]) if kw else 0.0
    if q.match == "hybrid":
        weight = adaptive_weight(cover, len(set(native.tokenize(q.text, idx.analyzer))))
    else:
        weight = 1.0 if q.match == "keyword" else 0.0
    missing = [key for key in keys if key not in ips]
    if missing:
        # the keyword side's candidates the vector side did not list: their inner products in one
        # scan restricted to them (the same kernel as the vector side's), not one lookup and dot each
        ips.update(idx.search(q.vector, len(missing), np.asarray(missing, dtype=np.uint64)))
    meta_of = idx.meta.get
    when = q.when
    out: dict[int, _Relevance] = {}
    for i, (key, raw) in enumerate(zip(keys, bm, strict=True)):
        meta = meta_of(key)
        if meta is None:
            continue
        ip = ips.get(key)
        cos = ip / meta.scale if ip is not None else 0.0
        scaled = float(raw) / bound if bound > 0 else 0.0
        if covers is not None:
            scaled = COVERAGE_SHARE * covers[i] + (1 - COVERAGE_SHARE) * scaled
        sim = (1.0 - weight) * max(cos, 0.0) + weight * scaled
        in_time = False
        if when is not None:
            in_time = when.contains(meta.occurred if meta.occurred is not None else meta.created)
            if in_time:
                sim += q.time_boost
        out[key] = _Relevance(sim, cos, scaled if raw > 0 else None, weight, in_time)
    return out, weight, bound


def _recency(idx: ScopeIndex, key: int, now: float, half_life: float) -> float:
    return recency(idx.accessed.get(key, now), now, half_life)


async def _shortlist(
    service: MemoryRepository,
    idx: ScopeIndex,
    q: _Query,
    k: int,
    allow: Any,
    pool: int,
    now: float,
) -> list[tuple[float, int, _Relevance]]:
    """Candidates as ``(estimated score, key, relevance)``, best first, long enough to hold the top k.

    Each side ranks ``want`` candidates: the vector index by ``cosine × scale`` (scale = importance),
    BM25 by its score. An item neither side listed has ``cosine × scale`` at most the vector side's
    last value and a BM25 score at most the keyword side's last one, so (scale and recency being at
    most 1) its estimated score is at most ``(1 - w) · ip_floor + w · bm_floor / bound`` plus the
    time boost (with ``memory.fusion = "coverage"`` the keyword term is at most ``w · (1/2 + 1/2 ·
    bm_floor / bound)``: an unseen item may hold every query term). Once the k-th estimate reaches
    that, no unseen item can beat it; until then the shortlist widens (in memory, no Redis round trip).
    """
    half_life = service.settings.recency_half_life_s
    want = min(pool, max(4 * k, 32))
    while True:
        vec: list[tuple[int, float]] = []
        kw: list[tuple[int, float]] = []
        if q.match != "keyword":
            if want > SEARCH_IN_THREAD_ABOVE:
                vec = await anyio.to_thread.run_sync(
                    idx.search, q.vector, want, allow, abandon_on_cancel=True
                )
            else:
                vec = idx.search(q.vector, want, allow)
        if q.match != "vector":
            kw = idx.keyword_search(q.text, want, allow)
        rel, weight, bound = _relevance(idx, q, vec, kw)
        ranked = sorted(
            (
                (
                    r.similarity * idx.meta[key].scale * recency(idx.accessed.get(key, now), now, half_life),
                    key,
                    r,
                )
                for key, r in rel.items()
            ),
            key=lambda t: (-t[0], t[1]),
        )
        ip_floor = vec[-1][1] if len(vec) >= want else 0.0
        bm_floor = kw[-1][1] / bound if len(kw) >= want and bound > 0 else 0.0
        if q.chunk_coverage and q.match == "hybrid":
            # An unseen memory may hold every query term (coverage 1) whenever BM25 listed a full
            # `want`; when it listed fewer, every memory sharing a term was listed.
            bm_floor = COVERAGE_SHARE * (1.0 if len(kw) >= want else 0.0) + (1 - COVERAGE_SHARE) * bm_floor
        unseen = (1.0 - weight) * max(ip_floor, 0.0) + weight * bm_floor
        if q.when is not None and (ip_floor > 0 or bm_floor > 0):
            unseen += q.time_boost
        if want >= pool or (len(ranked) >= k and ranked[k - 1][0] >= unseen):
            break
        want = min(pool, want * 4)
    return ranked


async def _touch_hits(
    service: MemoryRepository,
    top: list[tuple[float, RecallHit, MemoryRecord]],
    tiers: Sequence[str],
    scopes: Sequence[str],
    now: float,
) -> list[RecallHit]:
    """Count an access on every returned memory, record hits / misses, promote what qualifies."""
    k = service.keys
    s = service.settings
    hit_tiers = {(rec.agent, rec.tier) for _, _, rec in top}
    counts: dict[int, int] = {}
    # one script call per scope: a scope's keys share a slot, two scopes' keys may not
    for scope in dict.fromkeys([*scopes, *(rec.agent for _, _, rec in top)]):
        mine = [rec for _, _, rec in top if rec.agent == scope]
        keys: list[str] = []
        args: list[str | float | int] = [len(mine), repr(now), LN2 / s.recency_half_life_s]
        for rec in mine:
            ttl = s.tier(rec.tier).ttl_s
            keys += [
                k.memory(scope, rec.id),
                k.memory_rank(scope, rec.tier),
                k.memory_expiry(scope, rec.tier),
            ]
            args += [rec.id, "" if ttl is None else repr(ttl)]
        if scope in scopes:
            for tier in tiers:
                keys.append(k.memory_stats(scope, tier))
                args.append("hits" if (scope, tier) in hit_tiers else "misses")
        if keys:
            res = await service.touch_script(keys=keys, args=args)
            counts.update((rec.key, int(c)) for rec, c in zip(mine, res[: len(mine)], strict=True))
    hits: list[RecallHit] = []
    for _, hit, rec in top:
        count = counts.get(rec.key, -1)
        if int(count) < 0:
            continue  # expired between the search and now
        hits.append(await _touched(service, hit, rec, int(count), now))
    return hits


async def _fetch_and_touch(
    service: MemoryRepository,
    idx: ScopeIndex,
    ranked: list[tuple[float, int, _Relevance]],
    k: int,
    tiers: Sequence[str],
    scopes: Sequence[str],
    now: float,
) -> list[RecallHit]:
    """Read the first k live candidates and count the access on them in one script call.

    The script gets the head of the ranking (``2k + FETCH_SPARE`` candidates: packing and sending
    every shortlisted key and id cost more than the rest of the recall); only when fewer than k of
    those are still live does it change nothing, and the whole ranking is sent."""
    keys_ = service.keys
    s = service.settings
    scope = idx.scope
    keys: list[str] = []
    own_stats = len(tiers) if scope in scopes else 0
    head = ranked[: 2 * k + FETCH_SPARE]
    lead: list[str | float | int] = [k, repr(now), LN2 / s.recency_half_life_s, own_stats]
    per_tier: list[str] = []  # ARGV after the head-or-whole flag: tiers and ttls, then stats tiers
    for t in TIER_NAMES:
        ttl = s.tier(t).ttl_s
        keys += [keys_.memory_rank(scope, t), keys_.memory_expiry(scope, t)]
        per_tier += [t, "" if ttl is None else repr(ttl)]
    if own_stats:
        for tier in tiers:
            keys.append(keys_.memory_stats(scope, tier))
            per_tier.append(tier)

    async def run(part: list[tuple[float, int, _Relevance]]) -> Any:
        ids = [key_to_id(key) for _, key, _ in part]
        more = "1" if len(part) < len(ranked) else "0"
        return await service.fetch_touch_script(  # the scope's keys: one slot
            keys=[*keys, *(keys_.memory(scope, i) for i in ids)],
            args=[*lead, more, *per_tier, *ids, *META_FIELDS],
        )

    res = await run(head)
    if res is None:  # fewer than k of the head are live (nothing was changed): send them all
        res = await run(ranked)
    others = [sc for sc in scopes if sc != scope]
    if others:  # every candidate came from ``scope``: the other scopes' tiers count a miss
        async with service.redis.client.pipeline(transaction=False) as pipe:
            for sc in others:
                for tier in tiers:
                    pipe.hincrby(keys_.memory_stats(sc, tier), "misses", 1)
            await pipe.execute()
    half_life = s.recency_half_life_s
    width = len(META_FIELDS) + 2
    scored: list[tuple[float, RecallHit, MemoryRecord, int]] = []
    for j in range(0, len(res), width):
        _, key, rel = ranked[int(res[j]) - 1]
        rec = MemoryRecord.from_fields(key, dict(zip(META_FIELDS, res[j + 1 : j + width - 1], strict=True)))
        if rec is None or key not in idx.meta:
            continue
        score, hit, rec = _scored(rec, rel, now, half_life)
        scored.append((score, hit, rec, int(res[j + width - 1])))
    scored.sort(key=lambda x: -x[0])
    return [await _touched(service, hit, rec, count, now) for _, hit, rec, count in scored]


async def _touched(
    service: MemoryRepository, hit: RecallHit, rec: MemoryRecord, count: int, now: float
) -> RecallHit:
    """The hit after its access was counted: new count and expiry, cache, promotion."""
    s = service.settings
    ttl = s.tier(rec.tier).ttl_s
    rec = rec.evolve(count=int(count), accessed=now, expires=None if ttl is None else now + ttl)
    idx = service.scopes.get(rec.agent)
    if idx is not None:
        idx.accessed[rec.key] = now
        if rec.tier == "working":
            idx.cache(rec, now)
    hit = hit.model_copy(update={"item": rec.to_item()})
    if should_promote(rec.tier, rec.importance, rec.count, s.promote_after_accesses, s.promote_importance):
        await service.promote(
            rec, now, reason=f"recalled {rec.count - 1} times, importance {rec.importance:.2f}"
        )
        hit = hit.model_copy(update={"promoted_to": "long_term"})
    return hit
