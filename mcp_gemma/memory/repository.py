"""The agent memory's storage: five tiers in Redis, searched through an in-process index per scope.

:class:`MemoryRepository` holds what the memory operations share (the Redis layout, the per-scope
indexes, writes, fetches, promotion, removal); recall, the admin reads and consolidation are built
on it, and :class:`~mcp_gemma.memory.service.MemoryService` puts them together.

Layout in Redis (every key of a scope in the slot group of the scope, see ``store/keys.py``, so
every transaction and script below touches one slot): one hash per
memory (``mem:<id>``, with a real ``PEXPIRE`` for tiers that have a TTL) and, per scope and tier,
three sorted sets: ids by creation time, by retention key (eviction order, see
:mod:`mcp_gemma.memory.policy`) and by expiry time (to sweep index entries of expired hashes and
count expiries due). A per-scope version counter tells a process when its index is stale.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from mcp_gemma.aio import overlapped
from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.memory.config import TIER_NAMES, MemorySettings, TierName
from mcp_gemma.memory.index import ScopeIndex
from mcp_gemma.memory.models import (
    EvictedMemory,
    StoreReport,
)
from mcp_gemma.memory.policy import LN2, retention_key
from mcp_gemma.memory.records import (
    META_FIELDS,
    SHARED_AGENT,
    MemoryRecord,
    as_text,
    id_to_key,
    key_to_id,
    new_key,
    ts,
)
from mcp_gemma.memory.scripts import EVICT_AND_COUNT, EVICT_BEYOND_CAPACITY, FETCH_AND_TOUCH, TOUCH_RECALLED
from mcp_gemma.store.keys import SLOT_GROUPS
from mcp_gemma.store.redis import RedisStore, current_call, redis_guard

logger = logging.getLogger(__name__)

LlmSource = Callable[[], Any]


class MemoryRepository:
    """Store memories and keep the per-scope indexes in step with Redis."""

    def __init__(self, settings: MemorySettings, store: RedisStore, embeddings: EmbeddingService) -> None:
        self.settings = settings
        self.redis = store
        self.keys = store.keys
        self.embeddings = embeddings
        self.llm_source: LlmSource = lambda: None
        self.scopes: dict[str, ScopeIndex] = {}
        self._generation = store.generation  # a restarted server: every scope index reloads
        self._locks: dict[str, anyio.Lock] = {}
        self._evict = store.client.register_script(EVICT_BEYOND_CAPACITY)
        self.touch_script = store.client.register_script(TOUCH_RECALLED)
        self.fetch_touch_script = store.client.register_script(FETCH_AND_TOUCH)
        self._background: asyncio.Task[None] | None = None
        # keys handed out by calls in progress: a store re-run after a failover rewrites the same
        # memories (its earlier attempt may have been applied) instead of adding copies
        self._attempted: OrderedDict[tuple[int, str, str, int, str], dict[int, list[int]]] = OrderedDict()

    async def all_scopes(self) -> list[str]:
        """Every scope (agent id) that has stored something, sorted (one set per slot group)."""
        async with self.redis.client.pipeline(transaction=False) as pipe:
            for g in range(SLOT_GROUPS):
                pipe.smembers(self.keys.memory_scopes(g))
            rows = await pipe.execute()
        return sorted({as_text(m) for members in rows for m in members})

    # ---- validation -------------------------------------------------------------------------

    def check_tier(self, tier: str) -> TierName:
        """``tier`` if it names a tier, else an error listing the tiers."""
        if tier not in TIER_NAMES:
            raise InvalidInputError(f"unknown memory tier {tier!r}; use one of {', '.join(TIER_NAMES)}")
        return tier

    def _check_contents(self, contents: Sequence[str]) -> None:
        if not contents:
            raise InvalidInputError("nothing to store: pass a non-empty content")
        if len(contents) > self.settings.max_batch:
            raise InvalidInputError(
                f"{len(contents)} memories in one call is more than "
                f"memory.max_batch={self.settings.max_batch}; split the batch"
            )
        limit = self.settings.max_content_chars
        for i, text in enumerate(contents):
            if not text.strip():
                raise InvalidInputError(f"content #{i} is empty; a memory needs some text")
            if len(text) > limit:
                raise InvalidInputError(
                    f"content #{i} has {len(text)} characters, more than memory.max_content_chars={limit}"
                )

    # ---- scope index ------------------------------------------------------------------------

    def _lock(self, scope: str) -> anyio.Lock:
        return self._locks.setdefault(scope, anyio.Lock())

    async def prepare(self, scope: str, tiers: Sequence[str], now: float) -> ScopeIndex:
        """The scope's index, reloaded if another process changed it, with expired items swept."""
        return (await self.prepare_many([scope], tiers, now))[0]

    async def prepare_many(self, scopes: Sequence[str], tiers: Sequence[str], now: float) -> list[ScopeIndex]:
        """:meth:`prepare` for several scopes with one round trip when nothing changed."""
        k = self.keys
        if self._generation != self.redis.generation:
            self._generation = self.redis.generation
            self.scopes.clear()
        async with self.redis.client.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.get(k.memory_version(scope))
                for t in tiers:
                    pipe.zrangebyscore(k.memory_expiry(scope, t), "-inf", now)
            res = await pipe.execute()
        out: list[ScopeIndex] = []
        step = 1 + len(tiers)
        for i, scope in enumerate(scopes):
            version = int(res[i * step] or 0)
            idx = self.scopes.get(scope)
            if idx is None or idx.version != version:
                async with self._lock(scope):
                    idx = self.scopes.get(scope)
                    if idx is None or idx.version != version:
                        idx = await self._load(scope, version, now)
                        self.scopes[scope] = idx
            swept = res[i * step + 1 : (i + 1) * step]
            expired = {t: [as_text(m) for m in ids] for t, ids in zip(tiers, swept, strict=True) if ids}
            if expired:
                await self.remove(scope, idx, expired, stat="expired")
            out.append(idx)
        return out

    async def _load(self, scope: str, version: int, now: float) -> ScopeIndex:
        """Rebuild a scope's index from Redis."""
        started = time.perf_counter()
        s = self.settings
        idx = ScopeIndex(
            scope,
            self.embeddings.dim,
            s.tier("working"),
            s.max_batch,
            s.quantize,
            s.quantize_min_items,
            analyzer=s.bm25_analyzer,
        )
        idx.version = version
        client = self.redis.client
        async with client.pipeline(transaction=False) as pipe:
            for t in TIER_NAMES:
                pipe.zrange(self.keys.memory_tier(scope, t), 0, -1)
            members = await pipe.execute()
        ids = [m.decode() for tier_ids in members for m in tier_ids]
        fields = (*META_FIELDS, "embedding")
        batch = 2_000
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            async with client.pipeline(transaction=False) as pipe:
                for mid in chunk:
                    pipe.hmget(self.keys.memory(scope, mid), fields)
                rows = await pipe.execute()
            records = []
            for mid, row in zip(chunk, rows, strict=True):
                key = id_to_key(mid)
                rec = (
                    None
                    if key is None
                    else MemoryRecord.from_fields(key, dict(zip(fields, row, strict=True)))
                )
                if rec is not None and rec.embedding is not None:
                    records.append(rec)
            idx.put(records, now)
        logger.info(
            "memory scope %r: loaded %d items in %.1f ms",
            scope,
            len(idx),
            (time.perf_counter() - started) * 1e3,
        )
        return idx

    def advance(self, idx: ScopeIndex, version: int) -> None:
        """Record our own change; a gap means someone else wrote too, so reload next time."""
        idx.version = version if version == idx.version + 1 else -1

    async def remove(self, scope: str, idx: ScopeIndex, by_tier: dict[str, list[str]], stat: str) -> int:
        """Delete memories (hash and index entries) and count them under ``stat``."""
        k = self.keys
        total = sum(len(v) for v in by_tier.values())
        if total == 0:
            return 0
        async with self.redis.client.pipeline(transaction=True) as pipe:
            for tier, ids in by_tier.items():
                if not ids:
                    continue
                pipe.delete(*[k.memory(scope, i) for i in ids])
                pipe.zrem(k.memory_tier(scope, tier), *ids)
                pipe.zrem(k.memory_rank(scope, tier), *ids)
                pipe.zrem(k.memory_expiry(scope, tier), *ids)
                pipe.hincrby(k.memory_stats(scope, tier), stat, len(ids))
            pipe.incr(k.memory_version(scope))
            res = await pipe.execute()
        await self.redis.confirm_replicated(k.memory_version(scope))
        self.advance(idx, int(res[-1]))
        idx.drop(key for ids in by_tier.values() for i in ids if (key := id_to_key(i)) is not None)
        return total

    # ---- store ------------------------------------------------------------------------------

    @redis_guard
    async def store(
        self,
        contents: Sequence[str],
        *,
        tier: str = "short_term",
        importance: float = 0.5,
        tags: Sequence[str] = (),
        agent_id: str = "default",
        session_id: str | None = None,
        shared: bool = False,
        occurred: float | Sequence[float | None] | None = None,
    ) -> StoreReport:
        """Write memories to a tier, then evict the lowest-retention items beyond its capacity.

        ``occurred``: when what each memory records happened (epoch seconds; one value for all, or
        one per content), kept apart from the time it is stored."""
        tier_name = self.check_tier(tier)
        self._check_contents(contents)
        if occurred is None or isinstance(occurred, int | float):
            occurred_at: list[float | None] = [occurred] * len(contents)
        else:
            occurred_at = list(occurred)
            if len(occurred_at) != len(contents):
                raise InvalidInputError(
                    f"occurred_at has {len(occurred_at)} values for {len(contents)} contents; "
                    "give one value for all or one per content"
                )
        if not 0.0 <= importance <= 1.0 or math.isnan(importance):
            raise InvalidInputError(f"importance must be between 0 and 1, got {importance}")
        scope = SHARED_AGENT if shared else agent_id
        now = time.time()
        vectors, idx = await overlapped(
            self.embeddings.embed(list(contents)), self.prepare(scope, [tier_name], now)
        )
        now = time.time()  # the memories' times: after the embedding, as when the steps ran in turn
        ttl = self.settings.tier(tier_name).ttl_s
        expires = None if ttl is None else now + ttl
        clean_tags = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
        keys = [self._key_for(scope, tier_name, i, text) for i, text in enumerate(contents)]
        records = [
            MemoryRecord(
                key=key,
                tier=tier_name,
                content=text,
                importance=importance,
                tags=clean_tags,
                agent=scope,
                session=session_id,
                created=now,
                accessed=now,
                count=1,
                expires=expires,
                embedding=vec,
                occurred=at,
            )
            for key, text, vec, at in zip(keys, contents, vectors, occurred_at, strict=True)
        ]
        rank = retention_key(importance, 1, now, self.settings.recency_half_life_s)
        k = self.keys
        async with self.redis.client.pipeline(transaction=True) as pipe:
            for r in records:
                pipe.hset(k.memory(scope, r.id), mapping=r.to_hash())  # type: ignore[arg-type]
                if ttl is not None:
                    pipe.pexpire(k.memory(scope, r.id), int(ttl * 1000))
            ids = [r.id for r in records]
            pipe.zadd(k.memory_tier(scope, tier_name), dict.fromkeys(ids, now))
            pipe.zadd(k.memory_rank(scope, tier_name), dict.fromkeys(ids, rank))
            if expires is not None:
                pipe.zadd(k.memory_expiry(scope, tier_name), dict.fromkeys(ids, expires))
            pipe.hincrby(k.memory_stats(scope, tier_name), "stored", len(ids))
            pipe.sadd(k.memory_scopes_of(scope), scope)
            pipe.incr(k.memory_version(scope))
            pipe.eval(  # capacity check and tier size in the same round trip
                EVICT_AND_COUNT,
                2,
                k.memory_rank(scope, tier_name),
                k.memory_tier(scope, tier_name),
                self.settings.tier(tier_name).capacity,
            )
            res = await pipe.execute()
        await self.redis.confirm_replicated(k.memory_version(scope))
        self.advance(idx, int(res[-2]))
        idx.put(records, now)
        size, *popped = res[-1]
        count = int(size)
        evicted: list[EvictedMemory] = []
        if popped:
            evicted = await self._drop_popped(scope, idx, tier_name, popped, now)
            count = int(await self.redis.client.zcard(k.memory_tier(scope, tier_name)))
        return StoreReport(
            ids=ids,
            tier=tier_name,
            agent_id=scope,
            session_id=session_id,
            expires_at=ts(expires),
            evicted=evicted,
            tier_count=count,
        )

    def _key_for(self, scope: str, tier: str, i: int, text: str) -> int:
        """A new memory key; in a re-run of a call, the key its previous run gave the same item at
        the same point (so the re-run rewrites that memory rather than adding a copy)."""
        call, attempt = current_call()
        if not call:
            return new_key()
        runs = self._attempted.setdefault((call, scope, tier, i, text), {})
        mine = runs.setdefault(attempt, [])
        earlier = [a for a in runs if a < attempt]
        before = runs[max(earlier)] if earlier else []
        key = before[len(mine)] if len(mine) < len(before) else new_key()
        mine.append(key)
        while len(self._attempted) > 10_000:
            self._attempted.popitem(last=False)
        return key

    async def _enforce_capacity(
        self, scope: str, idx: ScopeIndex, tier: TierName, now: float
    ) -> list[EvictedMemory]:
        """Pop the lowest-retention members beyond the tier's capacity and delete them."""
        cap = self.settings.tier(tier).capacity
        popped = await self._evict(keys=[self.keys.memory_rank(scope, tier)], args=[cap])
        if not popped:
            return []
        return await self._drop_popped(scope, idx, tier, popped, now)

    async def _drop_popped(
        self, scope: str, idx: ScopeIndex, tier: TierName, popped: Sequence[Any], now: float
    ) -> list[EvictedMemory]:
        """Delete the members popped off the rank zset (``[member, score, ...]``) as evicted."""
        cap = self.settings.tier(tier).capacity
        pairs = [(popped[i].decode(), float(popped[i + 1])) for i in range(0, len(popped), 2)]
        await self.remove(scope, idx, {tier: [p[0] for p in pairs]}, stat="evicted")
        offset = now * LN2 / self.settings.recency_half_life_s
        logger.info("memory %s/%s over capacity %d: evicted %d", scope, tier, cap, len(pairs))
        return [
            EvictedMemory(id=mid, tier=tier, retention=0.0 if rk == -math.inf else math.exp(rk - offset))
            for mid, rk in pairs
        ]

    async def fetch(self, idx: ScopeIndex, keys: Sequence[int]) -> dict[int, MemoryRecord]:
        """Records for ``keys``: the working tier from the in-process cache, the rest from Redis."""
        out: dict[int, MemoryRecord] = {}
        remote: list[int] = []
        for key in keys:
            meta = idx.meta.get(key)
            if meta is None:
                continue
            rec = idx.cached(key) if meta.tier == "working" else None
            if rec is not None:
                out[key] = rec
            else:
                remote.append(key)  # not working-tier, or fell out of the cache: Redis decides
        if remote:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for key in remote:
                    pipe.hmget(self.keys.memory(idx.scope, key_to_id(key)), META_FIELDS)
                rows = await pipe.execute()
            for key, row in zip(remote, rows, strict=True):
                rec = MemoryRecord.from_fields(key, dict(zip(META_FIELDS, row, strict=True)))
                if rec is not None:
                    out[key] = rec
                    if rec.tier == "working":
                        idx.cache(rec, time.time())
        return out

    # ---- promotion --------------------------------------------------------------------------

    async def promote(self, rec: MemoryRecord, now: float, reason: str, to: TierName = "long_term") -> None:
        """Move a memory to a higher tier: new TTL, same id, same counts."""
        k = self.keys
        scope = rec.agent
        idx = self.scopes.get(scope) or await self.prepare(scope, [rec.tier], now)
        ttl = self.settings.tier(to).ttl_s
        expires = None if ttl is None else now + ttl
        rank = retention_key(rec.importance, rec.count, rec.accessed, self.settings.recency_half_life_s)
        mkey = k.memory(scope, rec.id)
        async with self.redis.client.pipeline(transaction=True) as pipe:
            pipe.hset(mkey, mapping={"tier": to, "expires": "" if expires is None else repr(expires)})
            if ttl is None:
                pipe.persist(mkey)
            else:
                pipe.pexpire(mkey, int(ttl * 1000))
            pipe.zrem(k.memory_tier(scope, rec.tier), rec.id)
            pipe.zrem(k.memory_rank(scope, rec.tier), rec.id)
            pipe.zrem(k.memory_expiry(scope, rec.tier), rec.id)
            pipe.zadd(k.memory_tier(scope, to), {rec.id: rec.created})
            pipe.zadd(k.memory_rank(scope, to), {rec.id: rank})
            if expires is not None:
                pipe.zadd(k.memory_expiry(scope, to), {rec.id: expires})
            pipe.hincrby(k.memory_stats(scope, rec.tier), "promoted", 1)
            pipe.incr(k.memory_version(scope))
            res = await pipe.execute()
        await self.redis.confirm_replicated(k.memory_version(scope))
        self.advance(idx, int(res[-1]))
        idx.retier(rec.key, to)
        logger.info("memory %s promoted %s -> %s: %s", rec.id, rec.tier, to, reason)
        await self._enforce_capacity(scope, idx, to, now)
