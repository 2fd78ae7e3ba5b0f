"""Reading one memory, listing a tier and clearing: the resource and housekeeping operations."""

from __future__ import annotations

import time

from mcp_gemma.errors import InvalidInputError, NotFoundError
from mcp_gemma.memory.config import TIER_NAMES
from mcp_gemma.memory.models import ClearReport, MemoryItem
from mcp_gemma.memory.records import META_FIELDS, SHARED_AGENT, MemoryRecord, as_text, id_to_key
from mcp_gemma.memory.repository import MemoryRepository
from mcp_gemma.store.redis import redis_guard


@redis_guard
async def get_item(
    service: MemoryRepository, memory_id: str, *, agent_id: str = "default", tier: str | None = None
) -> MemoryItem:
    """One memory by id (the agent's own or a shared one); a read counts as a hit or miss."""
    key = id_to_key(memory_id)
    rec = None
    if key is not None:
        # a memory lives under its scope's keys: the agent's own, else the shared scope's
        async with service.redis.client.pipeline(transaction=False) as pipe:
            for scope in dict.fromkeys((agent_id, SHARED_AGENT)):
                pipe.hmget(service.keys.memory(scope, memory_id), META_FIELDS)
            rows = await pipe.execute()
        for row in rows:
            rec = MemoryRecord.from_fields(key, dict(zip(META_FIELDS, row, strict=True)))
            if rec is not None:
                break
    visible = rec is not None and rec.agent in (agent_id, SHARED_AGENT) and (tier is None or rec.tier == tier)
    if tier is not None:
        stats_scope = rec.agent if rec is not None and visible else agent_id
        await service.redis.client.hincrby(
            service.keys.memory_stats(stats_scope, tier), "hits" if visible else "misses", 1
        )
    if rec is None or not visible:
        where = f"tier {tier!r} of agent {agent_id!r}" if tier else f"agent {agent_id!r}"
        raise NotFoundError(
            f"no memory {memory_id!r} in {where}; recall_memory or memory://{{tier}} lists ids"
        )
    return rec.to_item()


@redis_guard
async def list_tier(
    service: MemoryRepository, tier: str, *, agent_id: str = "default", limit: int = 100
) -> list[MemoryItem]:
    """The newest ``limit`` memories of one tier, newest first."""
    tier_name = service.check_tier(tier)
    now = time.time()
    idx = await service.prepare(agent_id, [tier_name], now)
    raw = await service.redis.client.zrevrange(service.keys.memory_tier(agent_id, tier_name), 0, limit - 1)
    keys = [k for m in raw if (k := id_to_key(as_text(m))) is not None]
    records = await service.fetch(idx, keys)
    return [records[k].to_item() for k in keys if k in records]


@redis_guard
async def clear(
    service: MemoryRepository, tier: str | None, *, agent_id: str = "default", confirm: bool = False
) -> ClearReport:
    """Delete every memory of one tier (or all tiers) of one agent; needs ``confirm=True``."""
    tiers = [service.check_tier(tier)] if tier else list(TIER_NAMES)
    if not confirm:
        what = f"tier {tier!r}" if tier else "every tier"
        raise InvalidInputError(
            f"clearing {what} of agent {agent_id!r} deletes memories for good; call again with confirm: true"
        )
    now = time.time()
    idx = await service.prepare(agent_id, tiers, now)
    client = service.redis.client
    async with client.pipeline(transaction=False) as pipe:
        for t in tiers:
            pipe.zrange(service.keys.memory_tier(agent_id, t), 0, -1)
        members = await pipe.execute()
    by_tier = {t: [m.decode() for m in ids] for t, ids in zip(tiers, members, strict=True)}
    removed = {t: 0 for t in tiers}
    for t, ids in by_tier.items():
        for start in range(0, len(ids), 5_000):
            removed[t] += await service.remove(agent_id, idx, {t: ids[start : start + 5_000]}, stat="cleared")
    return ClearReport(agent_id=agent_id, removed=removed)
