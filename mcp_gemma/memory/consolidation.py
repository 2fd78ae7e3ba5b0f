"""Consolidation: promote what qualifies, merge near-duplicates, summarise episodes with Gemma.

Merging is greedy and deterministic: within one tier, items are taken in order of retention
(highest first); each unassigned item absorbs every unassigned item whose cosine to it is at least
the threshold. The kept item takes the highest importance, the summed access counts, the union of
tags, the earliest creation and the latest access, and records every absorbed item (id, tier,
text, creation time, similarity) in its provenance.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from mcp_gemma.errors import McpGemmaError
from mcp_gemma.memory.config import TIER_NAMES, TierName
from mcp_gemma.memory.models import ConsolidationReport, EpisodeSummary, MergeGroup, Promotion
from mcp_gemma.memory.policy import retention, retention_key, should_promote
from mcp_gemma.memory.records import MemoryRecord, key_to_id
from mcp_gemma.memory.repository import MemoryRepository

logger = logging.getLogger(__name__)

BLOCK = 1024  # rows per similarity block: bounds memory to BLOCK × n floats
SUMMARY_PROMPT = (
    "Summarise these events of one session into a single short factual statement that is worth "
    "remembering later. Answer with the statement only.\n\nEvents:\n{events}\n\nStatement:"
)


def duplicate_groups(
    vectors: npt.NDArray[np.float32], order: Sequence[int], threshold: float
) -> list[list[tuple[int, float]]]:
    """Greedy groups of row indices (leader first) whose cosine to the leader is ``>= threshold``."""
    n = len(order)
    if n < 2:
        return []
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for start in range(0, n, BLOCK):
        block = vectors[start : start + BLOCK] @ vectors.T
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i != c:
                neighbours.setdefault(i, []).append((c, float(block[r, c])))
    taken: set[int] = set()
    groups: list[list[tuple[int, float]]] = []
    for i in order:
        if i in taken or i not in neighbours:
            continue
        members = [(j, s) for j, s in neighbours[i] if j not in taken]
        if not members:
            continue
        taken.add(i)
        taken.update(j for j, _ in members)
        groups.append([(i, 1.0), *sorted(members, key=lambda m: -m[1])])
    return groups


async def consolidate(
    service: MemoryRepository,
    *,
    agent_id: str = "default",
    tiers: Sequence[str] | None = None,
    threshold: float | None = None,
    session_id: str | None = None,
    dry_run: bool = False,
    summarise: bool = True,
    load_model: bool = True,
) -> ConsolidationReport:
    """Promote, merge duplicates and summarise episodes of one agent; a dry run writes nothing.

    ``summarise=False`` never asks Gemma; ``load_model=False`` (the background loop) asks it only
    when it is already loaded.
    """
    s = service.settings
    wanted: list[TierName] = [service.check_tier(t) for t in tiers] if tiers else list(TIER_NAMES)
    cutoff = s.duplicate_threshold if threshold is None else threshold
    now = time.time()
    idx = await service.prepare(agent_id, list(TIER_NAMES), now)
    notes: list[str] = []
    promoted: list[Promotion] = []
    if "short_term" in wanted:
        records = await service.fetch(idx, sorted(idx.by_tier.get("short_term", set())))
        for rec in records.values():
            if should_promote(
                rec.tier, rec.importance, rec.count, s.promote_after_accesses, s.promote_importance
            ):
                reason = f"importance {rec.importance:.2f}, recalled {rec.count - 1} times"
                promoted.append(
                    Promotion(id=rec.id, from_tier="short_term", to_tier="long_term", reason=reason)
                )
                if not dry_run:
                    await service.promote(rec, now, reason=reason)
    merged: list[MergeGroup] = []
    removed = 0
    for tier in wanted:
        groups, gone = await _merge_tier(service, agent_id, tier, cutoff, now, dry_run)
        merged.extend(groups)
        removed += gone
    summaries = await _summarise_episodes(
        service, agent_id, session_id, now, dry_run, summarise, load_model, notes
    )
    return ConsolidationReport(
        agent_id=agent_id,
        dry_run=dry_run,
        merged=merged,
        promoted=promoted,
        summaries=summaries,
        removed=removed,
        notes=notes,
    )


async def _merge_tier(
    service: MemoryRepository, scope: str, tier: TierName, cutoff: float, now: float, dry_run: bool
) -> tuple[list[MergeGroup], int]:
    idx = await service.prepare(scope, [tier], now)
    keys = sorted(idx.by_tier.get(tier, set()))
    if len(keys) < 2:
        return [], 0
    records = await service.fetch(idx, keys)
    unit = await embeddings_of(service, scope, [k for k in keys if k in records])
    keys = [k for k in keys if k in unit]
    if len(keys) < 2:
        return [], 0
    for key in keys:
        records[key].embedding = unit[key]
    vectors = np.stack([unit[k] for k in keys]).astype(np.float32)
    half_life = service.settings.recency_half_life_s
    worth = [
        retention(records[k].importance, records[k].count, records[k].accessed, now, half_life) for k in keys
    ]
    order = sorted(range(len(keys)), key=lambda i: (-worth[i], records[keys[i]].created))
    groups = await anyio.to_thread.run_sync(duplicate_groups, vectors, order, cutoff, abandon_on_cancel=True)
    out: list[MergeGroup] = []
    removed = 0
    for group in groups:
        leader = records[keys[group[0][0]]]
        absorbed = [(records[keys[i]], sim) for i, sim in group[1:]]
        kept = _merged(leader, absorbed)
        out.append(
            MergeGroup(
                kept_id=leader.id,
                tier=tier,
                content=leader.content,
                merged_ids=[r.id for r, _ in absorbed],
                min_similarity=round(min(sim for _, sim in absorbed), 4),
            )
        )
        if not dry_run:
            removed += await replace_merged(service, kept, [r for r, _ in absorbed], now)
    if out:
        logger.info(
            "memory %s/%s: %d duplicate groups%s", scope, tier, len(out), " (dry run)" if dry_run else ""
        )
    return out, removed


async def embeddings_of(
    service: MemoryRepository, scope: str, keys: Sequence[int]
) -> dict[int, npt.NDArray[np.float32]]:
    """Unit embeddings of ``keys`` read from Redis (the index only holds importance-scaled ones)."""
    async with service.redis.client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(service.keys.memory(scope, key_to_id(key)), "embedding")
        rows = await pipe.execute()
    return {
        key: np.frombuffer(raw, dtype=np.float32).copy() for key, raw in zip(keys, rows, strict=True) if raw
    }


def _merged(leader: MemoryRecord, absorbed: list[tuple[MemoryRecord, float]]) -> MemoryRecord:
    """The leader after absorbing duplicates, with their provenance."""
    everyone = [leader, *(r for r, _ in absorbed)]
    provenance = list(leader.provenance)
    for rec, sim in absorbed:
        provenance.extend(rec.provenance)
        provenance.append(
            {
                "id": rec.id,
                "tier": rec.tier,
                "content": rec.content,
                "created_at": rec.created,
                "similarity": round(sim, 4),
            }
        )
    tags = tuple(dict.fromkeys(t for r in everyone for t in r.tags))
    return leader.evolve(
        importance=max(r.importance for r in everyone),
        count=sum(r.count for r in everyone),
        tags=tags,
        created=min(r.created for r in everyone),
        accessed=max(r.accessed for r in everyone),
        source="merged",
        provenance=provenance,
    )


async def _summarise_episodes(
    service: MemoryRepository,
    scope: str,
    session_id: str | None,
    now: float,
    dry_run: bool,
    summarise: bool,
    load_model: bool,
    notes: list[str],
) -> list[EpisodeSummary]:
    """Turn each session's not-yet-summarised episodic memories into one semantic fact."""
    idx = await service.prepare(scope, ["episodic"], now)
    keys = sorted(idx.by_tier.get("episodic", set()))
    sessions: dict[str, list[int]] = {}
    for k in keys:
        sess = idx.meta[k].session
        if sess is not None and (session_id is None or sess == session_id):
            sessions.setdefault(sess, []).append(k)
    pending = await unsummarised(service, scope, sessions)
    if not pending:
        return []
    llm = service.llm_source() if summarise else None
    if llm is None or (not load_model and not getattr(llm, "loaded", True)):
        if not summarise:
            why = "not asked to summarise"
        elif llm is None:
            why = "no Gemma model is available"
        else:
            why = "Gemma is not loaded (background runs never load it)"
        notes.append(
            f"{why}: {len(pending)} episode(s) were not summarised into semantic facts "
            "(duplicates were still merged)"
        )
        return []
    out: list[EpisodeSummary] = []
    for sess, sess_keys in pending.items():
        records = await service.fetch(idx, sess_keys)
        events = sorted(records.values(), key=lambda r: r.created)
        if dry_run:
            out.append(
                EpisodeSummary(
                    session_id=sess,
                    semantic_id=None,
                    summary=f"(dry run) would summarise {len(events)} events",
                    source_ids=[r.id for r in events],
                )
            )
            continue
        try:
            text = await summarise_texts(
                llm,
                [r.content for r in events],
                service.settings.summary_max_tokens,
                service.settings.summary_timeout_s,
            )
        except McpGemmaError as exc:
            notes.append(
                f"Gemma could not summarise session {sess!r} ({exc}): merged without summarising, "
                "the events stay as they are"
            )
            continue
        if not text:
            notes.append(f"Gemma returned an empty summary for session {sess!r}; nothing stored")
            continue
        semantic_id = await store_summary(service, scope, sess, text, events, now)
        out.append(
            EpisodeSummary(
                session_id=sess, semantic_id=semantic_id, summary=text, source_ids=[r.id for r in events]
            )
        )
    return out


async def summarise_texts(llm: Any, texts: Sequence[str], max_tokens: int, timeout_s: float) -> str:
    """Ask the language model for one statement that sums up ``texts``."""
    events = "\n".join(f"- {t}" for t in texts)
    from mcp_gemma.llm.base import ChatMessage

    prompt = [ChatMessage(role="user", content=SUMMARY_PROMPT.format(events=events))]
    result = await llm.generate(prompt, max_new_tokens=max_tokens, timeout_s=timeout_s)
    text = getattr(result, "text", result)
    return str(text).strip().splitlines()[0].strip() if str(text).strip() else ""


async def replace_merged(
    service: MemoryRepository, kept: MemoryRecord, absorbed: Sequence[MemoryRecord], now: float
) -> int:
    """Write the kept memory of a merge and delete the ones it absorbed; returns how many went."""
    k = service.keys
    scope = kept.agent
    idx = await service.prepare(scope, [kept.tier], now)
    fields = {
        f: v
        for f, v in kept.to_hash().items()
        if f in {"importance", "count", "tags", "created", "accessed", "source", "provenance"}
    }
    rank = retention_key(kept.importance, kept.count, kept.accessed, service.settings.recency_half_life_s)
    async with service.redis.client.pipeline(transaction=True) as pipe:
        pipe.hset(k.memory(scope, kept.id), mapping=fields)  # type: ignore[arg-type]
        pipe.zadd(k.memory_tier(scope, kept.tier), {kept.id: kept.created})
        pipe.zadd(k.memory_rank(scope, kept.tier), {kept.id: rank})
        pipe.incr(k.memory_version(scope))
        res = await pipe.execute()
    service.advance(idx, int(res[-1]))
    idx.put([kept], now)  # new importance: new scale in the index (and the working cache refreshed)
    by_tier: dict[str, list[str]] = {}
    for rec in absorbed:
        by_tier.setdefault(rec.tier, []).append(rec.id)
    return await service.remove(scope, idx, by_tier, stat="merged")


async def unsummarised(
    service: MemoryRepository, scope: str, sessions: dict[str, list[int]]
) -> dict[str, list[int]]:
    """Sessions with at least two episodic memories that no summary has covered yet."""
    flat = [(sess, key) for sess, keys in sessions.items() for key in keys]
    if not flat:
        return {}
    async with service.redis.client.pipeline(transaction=False) as pipe:
        for _, key in flat:
            pipe.hget(service.keys.memory(scope, key_to_id(key)), "summary")
        marks = await pipe.execute()
    out: dict[str, list[int]] = {}
    for (sess, key), mark in zip(flat, marks, strict=True):
        if not mark:
            out.setdefault(sess, []).append(key)
    return {sess: keys for sess, keys in out.items() if len(keys) >= 2}


async def store_summary(
    service: MemoryRepository, scope: str, session: str, text: str, events: Sequence[MemoryRecord], now: float
) -> str:
    """Store a Gemma summary of an episode as a semantic fact that cites its events."""
    tags = tuple(dict.fromkeys(t for r in events for t in r.tags))
    report = await service.store(
        [text],
        tier="semantic",
        importance=max(r.importance for r in events),
        tags=tags,
        agent_id=scope,
        session_id=session,
    )
    new_id = report.ids[0]
    provenance = [{"id": r.id, "tier": r.tier, "content": r.content, "created_at": r.created} for r in events]
    async with service.redis.client.pipeline(transaction=True) as pipe:
        pipe.hset(
            service.keys.memory(scope, new_id),
            mapping={"source": "summary", "provenance": json.dumps(provenance)},
        )
        for r in events:
            pipe.hset(service.keys.memory(scope, r.id), "summary", new_id)
        await pipe.execute()
    return new_id


async def consolidate_every(service: MemoryRepository, interval_s: float) -> None:
    """Background loop: consolidate every scope each ``interval_s`` seconds until cancelled."""
    while True:
        await anyio.sleep(interval_s)
        try:
            for scope in await service.all_scopes():
                report = await consolidate(service, agent_id=scope, load_model=False)
                if report.merged or report.promoted or report.summaries:
                    logger.info(
                        "background consolidation of %r: %d merged, %d promoted, %d summaries",
                        scope,
                        len(report.merged),
                        len(report.promoted),
                        len(report.summaries),
                    )
        except Exception as exc:
            logger.warning("background memory consolidation failed: %s", exc)
