"""Moving a namespace from the single-tag layout (1) to the slot-group layout (2) of ``keys.py``.

Run on every start by :meth:`RedisStore.open`: a namespace with no layout-1 data is stamped and
left alone; otherwise one process takes a lock and moves documents (with new chunk ids, which name
their slot group), then memories (same ids), a batch at a time, while the others wait for the
stamp. Each step first writes the new keys, then deletes the old ones, and a re-run skips what is
already there, so a migration cut short resumes where it stopped. Every command touches one slot.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import anyio

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.memory.config import TIER_NAMES as TIERS
from mcp_gemma.store.keys import LAYOUT_VERSION, SLOT_GROUPS, Keys, LegacyKeys, group_of

logger = logging.getLogger(__name__)

BATCH = 200
LOCK_MS = 60_000
WAIT_S = 600.0
CHANGE_LOG_MAX = 100_000  # rag.change_log_max's default: the stream is trimmed to about this


async def ensure_layout(client: Any, keys: Keys) -> None:
    """Make sure the namespace is in the current layout, migrating (or waiting for a migration)."""
    raw = await client.hget(keys.meta(), "layout")
    layout = int(raw) if raw is not None else None
    if layout is not None and layout > LAYOUT_VERSION:
        raise StoreUnavailableError(
            f"namespace {keys.ns!r} uses Redis key layout {layout}, written by a newer mcp-gemma; "
            "upgrade this one (or use another namespace)"
        )
    if layout == LAYOUT_VERSION:
        return
    legacy = LegacyKeys(keys.ns)
    if not await client.exists(legacy.docs(), legacy.memory_scopes(), legacy.changes(), legacy.chunk_seq()):
        return  # nothing in layout 1 (a fresh namespace stays untouched: opening writes nothing)
    token = secrets.token_hex(8)
    deadline = time.monotonic() + WAIT_S
    while not await client.set(keys.migration_lock(), token, nx=True, px=LOCK_MS):
        if await client.hget(keys.meta(), "layout") == str(LAYOUT_VERSION).encode():
            return  # another process finished it
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"another process has been migrating namespace {keys.ns!r} for {WAIT_S:.0f} s; if none "
                f"is running, delete the key {keys.migration_lock()!r} and start again"
            )
        await anyio.sleep(0.5)
    try:
        started = time.perf_counter()
        docs = await _migrate_documents(client, keys, legacy, token)
        scopes = await _migrate_memories(client, keys, legacy, token)
        await client.delete(legacy.changes(), legacy.chunk_seq())
        await client.hset(keys.meta(), "layout", LAYOUT_VERSION)
        logger.warning(
            "namespace %r moved to Redis key layout %d (%d slot groups): %d documents, %d memory scopes "
            "in %.1f s",
            keys.ns,
            LAYOUT_VERSION,
            SLOT_GROUPS,
            docs,
            scopes,
            time.perf_counter() - started,
        )
    finally:
        if await client.get(keys.migration_lock()) == token.encode():
            await client.delete(keys.migration_lock())


async def _keep_lock(client: Any, keys: Keys, token: str) -> None:
    if await client.get(keys.migration_lock()) != token.encode():
        raise StoreUnavailableError(
            f"lost the migration lock of namespace {keys.ns!r} (a step took over {LOCK_MS / 1000:.0f} s); "
            "start again: the migration resumes where it stopped"
        )
    await client.pexpire(keys.migration_lock(), LOCK_MS)


async def _pipelined(client: Any, commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for name, args, kwargs in commands:
            getattr(pipe, name)(*args, **kwargs)
        return list(await pipe.execute())


async def _migrate_documents(client: Any, keys: Keys, legacy: LegacyKeys, token: str) -> int:
    moved = 0
    while True:
        await _keep_lock(client, keys, token)
        page = await client.zrange(legacy.docs(), 0, BATCH - 1, withscores=True)
        if not page:
            return moved
        ids = [bytes(m).decode() for m, _ in page]
        olds = await _pipelined(client, [("hgetall", (legacy.doc(d),), {}) for d in ids])
        done = await _pipelined(client, [("exists", (keys.doc(d),), {}) for d in ids])
        for doc_id, (_, score), old, present in zip(ids, page, olds, done, strict=True):
            old_chunks = [int(x) for x in old.get(b"chunk_ids", b"").decode().split(",") if x]
            if old and not present:
                await _move_document(client, keys, legacy, doc_id, float(score), old, old_chunks)
            async with client.pipeline(transaction=True) as pipe:  # the old keys: one (old) slot
                pipe.delete(legacy.doc(doc_id), *(legacy.chunk(c) for c in old_chunks))
                pipe.zrem(legacy.docs(), doc_id)
                await pipe.execute()
            moved += 1


async def _move_document(
    client: Any,
    keys: Keys,
    legacy: LegacyKeys,
    doc_id: str,
    created: float,
    old: dict[bytes, bytes],
    old_chunks: list[int],
) -> None:
    group = group_of(doc_id)
    chunks = await _pipelined(client, [("hgetall", (legacy.chunk(c),), {}) for c in old_chunks])
    chunks = [c for c in chunks if c]
    last = int(await client.incrby(keys.chunk_seq(group), max(len(chunks), 1)))
    new_ids = [seq * SLOT_GROUPS + group for seq in range(last - len(chunks) + 1, last + 1)]
    head = dict(old)
    head[b"chunk_ids"] = ",".join(map(str, new_ids)).encode()
    async with client.pipeline(transaction=True) as pipe:  # the new keys: one (new) slot
        for cid, fields in zip(new_ids, chunks, strict=True):
            pipe.hset(keys.chunk(cid), mapping=fields)
        pipe.hset(keys.doc(doc_id), mapping=head)
        pipe.zadd(keys.docs(group), {doc_id: created})
        pipe.xadd(
            keys.changes(group),
            {"op": "upsert", "doc": doc_id, "add": head[b"chunk_ids"], "del": ""},
            maxlen=CHANGE_LOG_MAX,
            approximate=True,
        )
        await pipe.execute()


async def _migrate_memories(client: Any, keys: Keys, legacy: LegacyKeys, token: str) -> int:
    scopes = sorted(bytes(s).decode() for s in await client.smembers(legacy.memory_scopes()))
    for scope in scopes:
        await _keep_lock(client, keys, token)
        lk = legacy.memory_scope_key
        reads: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        for t in TIERS:
            reads += [
                ("zrange", (lk("memtier", scope, t), 0, -1), {"withscores": True}),
                ("zrange", (lk("memrank", scope, t), 0, -1), {"withscores": True}),
                ("zrange", (lk("memexp", scope, t), 0, -1), {"withscores": True}),
                ("hgetall", (lk("memstats", scope, t),), {}),
            ]
        reads.append(("get", (lk("memver", scope),), {}))
        res = await _pipelined(client, reads)
        ids = sorted({bytes(m).decode() for i in range(0, 4 * len(TIERS), 4) for m, _ in res[i]})
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            rows = await _pipelined(
                client,
                [(cmd, (legacy.memory(m),), {}) for m in part for cmd in ("hgetall", "pttl")],
            )
            async with client.pipeline(transaction=True) as pipe:
                for j, mid in enumerate(part):
                    fields, ttl = rows[2 * j], int(rows[2 * j + 1])
                    if fields:
                        pipe.hset(keys.memory(scope, mid), mapping=fields)
                        if ttl > 0:
                            pipe.pexpire(keys.memory(scope, mid), ttl)
                await pipe.execute()
            await _keep_lock(client, keys, token)
        async with client.pipeline(transaction=True) as pipe:  # the scope's new keys: one slot
            for i, t in enumerate(TIERS):
                tier, rank, expiry, stats = res[4 * i : 4 * i + 4]
                for name, pairs in (("memory_tier", tier), ("memory_rank", rank), ("memory_expiry", expiry)):
                    if pairs:
                        pipe.zadd(getattr(keys, name)(scope, t), {m: s for m, s in pairs})
                if stats:
                    pipe.hset(keys.memory_stats(scope, t), mapping=stats)
            pipe.set(keys.memory_version(scope), int(res[-1] or 0) + 1)
            pipe.sadd(keys.memory_scopes_of(scope), scope)
            await pipe.execute()
        old_keys = [legacy.memory(m) for m in ids]
        old_keys += [
            lk(kind, scope, t) for t in TIERS for kind in ("memtier", "memrank", "memexp", "memstats")
        ]
        old_keys.append(lk("memver", scope))
        for start in range(0, len(old_keys), 1_000):
            await client.delete(*old_keys[start : start + 1_000])
        await client.srem(legacy.memory_scopes(), scope)
    return len(scopes)
