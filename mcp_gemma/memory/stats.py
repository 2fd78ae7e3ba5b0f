"""Per-tier statistics read from Redis: counts, bytes, age, expiries due, hit rate."""

from __future__ import annotations

import time

from mcp_gemma.memory.config import TIER_NAMES, MemorySettings
from mcp_gemma.memory.models import MemoryStatsReport, TierStats
from mcp_gemma.memory.records import as_text, ts
from mcp_gemma.store.keys import Keys
from mcp_gemma.store.redis import AnyRedis

BYTES_SAMPLE = 200  # MEMORY USAGE calls per tier; beyond this the total is extrapolated


async def tier_stats(
    client: AnyRedis, keys: Keys, settings: MemorySettings, agent_id: str
) -> MemoryStatsReport:
    """Statistics of every tier of one agent (one pipeline, plus a bounded byte sample)."""
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        for t in TIER_NAMES:
            tier_key = keys.memory_tier(agent_id, t)
            exp_key = keys.memory_expiry(agent_id, t)
            ttl = settings.tier(t).ttl_s
            soon = now + (ttl * 0.1 if ttl else 0.0)
            pipe.zcard(tier_key)
            pipe.zrange(tier_key, 0, 0, withscores=True)
            pipe.zrange(tier_key, -1, -1, withscores=True)
            pipe.zcount(exp_key, f"({now}", soon)
            pipe.zcount(exp_key, "-inf", now)
            pipe.hgetall(keys.memory_stats(agent_id, t))
            pipe.zrandmember(tier_key, BYTES_SAMPLE)
        res = await pipe.execute()
    tiers: list[TierStats] = []
    for i, t in enumerate(TIER_NAMES):
        count, oldest, newest, due, pending, counters, sample = res[i * 7 : i * 7 + 7]
        c = {k.decode(): int(v) for k, v in counters.items()}
        sample = sample or []
        used = 0
        if sample:
            async with client.pipeline(transaction=False) as pipe:
                for m in sample:
                    pipe.memory_usage(keys.memory(agent_id, as_text(m)), samples=0)
                sizes = await pipe.execute()
            measured = sum(int(s or 0) for s in sizes)
            used = round(measured * int(count) / len(sample))
        hits, misses = c.get("hits", 0), c.get("misses", 0)
        tier_cfg = settings.tier(t)
        tiers.append(
            TierStats(
                tier=t,
                count=int(count),
                capacity=tier_cfg.capacity,
                bytes=used,
                ttl_s=tier_cfg.ttl_s,
                oldest_at=ts(oldest[0][1]) if oldest else None,
                newest_at=ts(newest[0][1]) if newest else None,
                expiring_within_ttl_10pct=int(due),
                expired_pending=int(pending),
                hits=hits,
                misses=misses,
                hit_rate=round(hits / (hits + misses), 4) if hits + misses else None,
                evicted=c.get("evicted", 0),
                expired=c.get("expired", 0),
                promoted=c.get("promoted", 0),
            )
        )
    return MemoryStatsReport(
        agent_id=agent_id,
        tiers=tiers,
        total_count=sum(t.count for t in tiers),
        total_bytes=sum(t.bytes for t in tiers),
    )
