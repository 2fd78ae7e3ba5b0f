"""The move from the single-tag key layout (1) to slot groups (2), on a real Redis.

Data is written with today's code, then put back into the layout-1 key names by
:func:`to_layout_1` (test code: the names and fields layout 1 used, see ``LegacyKeys``); opening the
server again must move it all forward with nothing lost.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.memory.config import TIER_NAMES
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState
from mcp_gemma.store.keys import LAYOUT_VERSION, SLOT_GROUPS, Keys, LegacyKeys
from mcp_gemma.store.redis import RedisStore

pytestmark = pytest.mark.anyio

TEXTS = {
    "tides": "Tides are caused by the gravitational pull of the moon on the oceans of the earth.",
    "ice": "Glaciers are slow rivers of ice that carve valleys over thousands of years.",
    "bread": "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
}


async def to_layout_1(client: Any, ns: str) -> None:
    """Rename every key of namespace ``ns`` to its layout-1 name (chunk ids kept: any int did)."""
    keys, old = Keys(ns), LegacyKeys(ns)
    top = 0
    for g in range(SLOT_GROUPS):
        for doc_id, score in await client.zrange(keys.docs(g), 0, -1, withscores=True):
            doc_id = doc_id.decode()
            head = await client.hgetall(keys.doc(doc_id))
            chunk_ids = [int(c) for c in head[b"chunk_ids"].decode().split(",") if c]
            for cid in chunk_ids:
                await client.hset(old.chunk(cid), mapping=await client.hgetall(keys.chunk(cid)))
                await client.delete(keys.chunk(cid))
                top = max(top, cid)
            await client.hset(old.doc(doc_id), mapping=head)
            await client.zadd(old.docs(), {doc_id: score})
            await client.xadd(
                old.changes(), {"op": "upsert", "doc": doc_id, "add": head[b"chunk_ids"], "del": ""}
            )
            await client.delete(keys.doc(doc_id))
        await client.delete(keys.docs(g), keys.changes(g), keys.chunk_seq(g))
    await client.set(old.chunk_seq(), top)
    await client.delete(keys.change_epoch())  # layout 1 had none
    for g in range(SLOT_GROUPS):
        for scope in await client.smembers(keys.memory_scopes(g)):
            scope = scope.decode()
            for t in TIER_NAMES:
                for kind, new in (
                    ("memtier", keys.memory_tier),
                    ("memrank", keys.memory_rank),
                    ("memexp", keys.memory_expiry),
                ):
                    pairs = await client.zrange(new(scope, t), 0, -1, withscores=True)
                    if pairs:
                        await client.zadd(old.memory_scope_key(kind, scope, t), dict(pairs))
                    await client.delete(new(scope, t))
                    for mid, _ in pairs if kind == "memtier" else ():
                        mid = mid.decode()
                        ttl = await client.pttl(keys.memory(scope, mid))
                        await client.hset(
                            old.memory(mid), mapping=await client.hgetall(keys.memory(scope, mid))
                        )
                        if ttl > 0:
                            await client.pexpire(old.memory(mid), ttl)
                        await client.delete(keys.memory(scope, mid))
                stats = await client.hgetall(keys.memory_stats(scope, t))
                if stats:
                    await client.hset(old.memory_scope_key("memstats", scope, t), mapping=stats)
                await client.delete(keys.memory_stats(scope, t))
            await client.set(
                old.memory_scope_key("memver", scope), await client.get(keys.memory_version(scope))
            )
            await client.delete(keys.memory_version(scope))
            await client.sadd(old.memory_scopes(), scope)
        await client.delete(keys.memory_scopes(g))
    await client.hdel(keys.meta(), "layout")


async def namespace_keys(client: Any, ns: str) -> list[str]:
    return sorted([k.decode() async for k in client.scan_iter(match=f"{{{ns}[}}/]*")])


async def test_layout_1_data_is_moved_forward_on_start(settings: Settings) -> None:
    with anyio.fail_after(240):
        state = await AppState.open(settings)
        try:
            for doc_id, text in TEXTS.items():
                await state.rag.ingest(text, doc_id=doc_id, metadata={"topic": doc_id})
            stored = await state.memory.store(["The user prefers tea over coffee."], tier="long_term")
            short = await state.memory.store(["Meeting moved to Thursday."], tier="short_term", agent_id="a2")
            before_search = [
                (h.doc_id, h.text) for h in (await state.rag.search("moon and oceans", limit=3)).hits
            ]
            client = state.store.client
            await to_layout_1(client, settings.namespace)
            legacy = await namespace_keys(client, settings.namespace)
            assert legacy and all(k.startswith(f"{{{settings.namespace}}}:") for k in legacy)
        finally:
            await state.close()

        state = await AppState.open(settings)  # migrates
        try:
            client = state.store.client
            after = await namespace_keys(client, settings.namespace)
            assert [k for k in after if k.startswith(f"{{{settings.namespace}}}:")] == [
                f"{{{settings.namespace}}}:meta",
            ]
            assert await client.hget(state.store.keys.meta(), "layout") == str(LAYOUT_VERSION).encode()
            listing = await state.rag.list_documents()
            assert sorted(d.id for d in listing.documents) == sorted(TEXTS)
            for doc_id, text in TEXTS.items():
                doc = await state.rag.get_document(doc_id, include_text=True, include_chunks=True)
                assert doc.text == text and doc.metadata == {"topic": doc_id}
                assert doc.chunk_list is not None
                assert all(
                    c.chunk_id % SLOT_GROUPS
                    == state.store.keys.tags.index(state.store.keys.doc(doc_id).split(":")[0])
                    for c in doc.chunk_list
                )
            hits = (await state.rag.search("moon and oceans", limit=3)).hits
            assert [(h.doc_id, h.text) for h in hits] == before_search
            item = await state.memory.get(stored.ids[0])
            assert item.content == "The user prefers tea over coffee." and item.tier == "long_term"
            recalled = await state.memory.recall("what does the user drink", agent_id="default")
            assert [h.item.id for h in recalled.hits] == stored.ids
            moved = await state.memory.get(short.ids[0], agent_id="a2")
            assert moved.content == "Meeting moved to Thursday."
            ttl = await client.pttl(state.store.keys.memory("a2", short.ids[0]))
            assert ttl > 0  # the short-term TTL came along
            assert await state.memory.agent_ids() == ["a2", "default"]
            # and the migrated data takes new writes in the new layout
            await state.rag.ingest("Volcanoes erupt molten rock.", doc_id="lava")
            assert (await state.rag.list_documents()).total == 4
        finally:
            await state.close()


async def test_a_layout_from_a_newer_version_is_refused(settings: Settings) -> None:
    store = await RedisStore.open(settings)
    try:
        await store.client.hset(store.keys.meta(), "layout", LAYOUT_VERSION + 1)
    finally:
        await store.close()
    with pytest.raises(StoreUnavailableError, match="written by a newer mcp-gemma; upgrade this one"):
        await RedisStore.open(settings)
