"""Memories out of and into Redis as plain records (``mcp-gemma export`` / ``import``).

A record is every field of a memory: id, scope (agent), tier, content, importance, tags, session,
created / accessed times, access count, provenance, when it happened, its absolute expiry time
(so an imported memory expires when the original would have, not later) and its embedding
(float32, base64). Import checks each record, skips one already expired, reuses the embedding when
the caller says the model is the same, and writes the hash with its expiry and the tier's sorted
sets the way :meth:`~mcp_gemma.memory.repository.MemoryRepository.store` does.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from mcp_gemma.errors import InvalidInputError, McpGemmaError
from mcp_gemma.memory.config import TIER_NAMES
from mcp_gemma.memory.policy import retention_key
from mcp_gemma.memory.records import META_FIELDS, MemoryRecord, as_text, id_to_key
from mcp_gemma.memory.repository import MemoryRepository
from mcp_gemma.store.keys import SLOT_GROUPS
from mcp_gemma.store.redis import redis_guard

EXPORT_BATCH = 500
# The bounds store_memory's arguments have, so an import cannot create what a client could not.
SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SESSION_CHARS = 128
MAX_TAGS = 32
MAX_TAG_CHARS = 64


async def export_memories(repo: MemoryRepository) -> AsyncIterator[dict[str, Any]]:
    """Every live memory of every scope and tier as a record."""
    client = repo.redis.client
    k = repo.keys
    fields = (*META_FIELDS, "embedding")
    async with client.pipeline(transaction=False) as pipe:
        for group in range(SLOT_GROUPS):
            pipe.smembers(k.memory_scopes(group))
        scopes = sorted({as_text(s) for members in await pipe.execute() for s in members})
    for scope in scopes:
        for tier in TIER_NAMES:
            ids = [as_text(m) for m in await client.zrange(k.memory_tier(scope, tier), 0, -1)]
            for start in range(0, len(ids), EXPORT_BATCH):
                part = ids[start : start + EXPORT_BATCH]
                async with client.pipeline(transaction=False) as pipe:
                    for mid in part:
                        pipe.hmget(k.memory(scope, mid), fields)
                    rows = await pipe.execute()
                for mid, row in zip(part, rows, strict=True):
                    key = id_to_key(mid)
                    rec = (
                        None
                        if key is None
                        else MemoryRecord.from_fields(key, dict(zip(fields, row, strict=True)))
                    )
                    if rec is None or rec.embedding is None:
                        continue  # expired or removed since the listing
                    yield {
                        "kind": "memory",
                        "id": rec.id,
                        "scope": scope,
                        "tier": rec.tier,
                        "content": rec.content,
                        "importance": rec.importance,
                        "tags": list(rec.tags),
                        "session": rec.session,
                        "created": rec.created,
                        "accessed": rec.accessed,
                        "count": rec.count,
                        "expires": rec.expires,
                        "occurred": rec.occurred,
                        "source": rec.source,
                        "provenance": rec.provenance,
                        "embedding": base64.b64encode(
                            np.ascontiguousarray(rec.embedding, dtype=np.float32).tobytes()
                        ).decode("ascii"),
                    }


def _number(record: Mapping[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = record.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"'{name}' must be a number")
    return float(value)


def _record(repo: MemoryRepository, record: Mapping[str, Any]) -> tuple[MemoryRecord, bytes]:
    """A checked memory from a record, and its exported embedding bytes (maybe empty)."""
    key = id_to_key(str(record.get("id", "")))
    if key is None:
        raise InvalidInputError("'id' must be 16 hex digits")
    tier = repo.check_tier(str(record.get("tier", "")))
    content, scope, session = record.get("content"), record.get("scope"), record.get("session")
    if not isinstance(content, str) or not content.strip():
        raise InvalidInputError("'content' must be non-empty text")
    if len(content) > repo.settings.max_content_chars:
        raise InvalidInputError(
            f"'content' is longer than memory.max_content_chars={repo.settings.max_content_chars}"
        )
    if not isinstance(scope, str) or SCOPE.fullmatch(scope) is None:
        raise InvalidInputError("'scope' must be an agent id: 1 to 64 of A-Z a-z 0-9 _ . -")
    if session is not None and (not isinstance(session, str) or len(session) > MAX_SESSION_CHARS):
        raise InvalidInputError(f"'session' must be null or text of at most {MAX_SESSION_CHARS} characters")
    tags = record.get("tags", [])
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in tags)
    ):
        raise InvalidInputError(
            f"'tags' must be a list of at most {MAX_TAGS} strings of 1 to {MAX_TAG_CHARS}"
        )
    provenance = record.get("provenance", [])
    if not isinstance(provenance, list) or not all(isinstance(p, dict) for p in provenance):
        raise InvalidInputError("'provenance' must be a list of objects")
    importance = _number(record, "importance")
    if importance is None or not 0.0 <= importance <= 1.0:
        raise InvalidInputError("'importance' must be between 0 and 1")
    count = record.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInputError("'count' must be a positive integer")
    try:
        embedding = base64.b64decode(str(record.get("embedding", "")), validate=True)
    except (binascii.Error, ValueError):
        embedding = b""
    rec = MemoryRecord(
        key=key,
        tier=tier,
        content=content,
        importance=importance,
        tags=tuple(tags),
        agent=scope,
        session=session,
        created=_number(record, "created") or 0.0,
        accessed=_number(record, "accessed") or 0.0,
        count=count,
        expires=_number(record, "expires", optional=True),
        source=str(record.get("source") or "stored"),
        provenance=list(provenance),
        occurred=_number(record, "occurred", optional=True),
    )
    return rec, embedding


@redis_guard
async def import_memories(
    repo: MemoryRepository, records: Sequence[Mapping[str, Any]], *, reuse_vectors: bool
) -> tuple[int, list[tuple[str, str]]]:
    """Write memory records; returns ``(written, problems as (id, error))``.

    A memory already expired is skipped; one whose id exists is replaced (an import is idempotent).
    """
    problems: list[tuple[str, str]] = []
    now = time.time()
    ready: list[MemoryRecord] = []
    pending: list[MemoryRecord] = []  # embedded again: the export came from another model
    dim = repo.embeddings.dim
    for record in records:
        try:
            rec, raw = _record(repo, record)
        except McpGemmaError as exc:
            problems.append((str(record.get("id", "?"))[:64], str(exc)))
            continue
        if rec.expires is not None and rec.expires <= now:
            problems.append((rec.id, "expired before the import; skipped"))
            continue
        if reuse_vectors and len(raw) == dim * 4:
            vector = np.frombuffer(raw, dtype=np.float32).copy()
            if np.isfinite(vector).all():
                rec.embedding = vector
                ready.append(rec)
                continue
        pending.append(rec)
    if pending:
        vectors = await repo.embeddings.embed([r.content for r in pending])
        for rec, vec in zip(pending, vectors, strict=True):
            rec.embedding = vec
        ready.extend(pending)
    if not ready:
        return 0, problems
    client = repo.redis.client
    k = repo.keys
    async with client.pipeline(transaction=False) as pipe:
        for rec in ready:
            pipe.hmget(k.memory(rec.agent, rec.id), ["tier", "agent"])
        olds = await pipe.execute()
    half_life = repo.settings.recency_half_life_s
    by_scope: dict[str, list[tuple[MemoryRecord, Any]]] = {}
    for rec, old in zip(ready, olds, strict=True):
        by_scope.setdefault(rec.agent, []).append((rec, old))
    # One transaction per scope: a scope's keys share a slot (a cluster refuses one that spans slots).
    for scope, items in sorted(by_scope.items()):
        async with client.pipeline(transaction=True) as pipe:
            for rec, (old_tier, old_scope) in items:
                if old_tier is not None and old_scope is not None:  # replaced: out of its old sets
                    tier = as_text(old_tier)
                    for key in (
                        k.memory_tier(scope, tier),
                        k.memory_rank(scope, tier),
                        k.memory_expiry(scope, tier),
                    ):
                        pipe.zrem(key, rec.id)
                mkey = k.memory(scope, rec.id)
                pipe.delete(mkey)
                pipe.hset(mkey, mapping=rec.to_hash())  # type: ignore[arg-type]
                if rec.expires is not None:
                    pipe.pexpireat(mkey, int(rec.expires * 1000))
                    pipe.zadd(k.memory_expiry(scope, rec.tier), {rec.id: rec.expires})
                pipe.zadd(k.memory_tier(scope, rec.tier), {rec.id: rec.created})
                rank = retention_key(rec.importance, rec.count, rec.accessed, half_life)
                pipe.zadd(k.memory_rank(scope, rec.tier), {rec.id: rank})
                pipe.hincrby(k.memory_stats(scope, rec.tier), "imported", 1)
            pipe.sadd(k.memory_scopes_of(scope), scope)
            pipe.incr(k.memory_version(scope))  # every process reloads that scope's index
            await pipe.execute()
    return len(ready), problems
