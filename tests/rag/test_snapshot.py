"""The index snapshot on real Redis and MiniLM: saved on close, loaded at start with the changes after
it replayed, and discarded (rebuilt from Redis) whenever it does not match."""

from __future__ import annotations

import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag import snapshot
from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.state import AppState
from mcp_gemma.store.keys import SLOT_GROUPS

pytestmark = pytest.mark.anyio

DOCS = {
    "tides": "Tides are caused by the gravitational pull of the moon on the oceans of the earth.",
    "ice": "Glaciers are slow rivers of ice that carve valleys over thousands of years.",
    "bread": "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
}


def without_snapshot(settings: Settings) -> Settings:
    """The same Redis and namespace, another data dir, snapshots off."""
    assert settings.redis_url is not None
    return load_settings(
        data_dir=settings.data_dir.parent / "other",
        redis_url=settings.redis_url.get_secret_value(),
        namespace=settings.namespace,
        rag={"snapshot": False},
    )


async def hits(state: AppState, query: str) -> list[tuple[str, str]]:
    return [(h.doc_id, h.text) for h in (await state.rag.hybrid_search(query, limit=5)).hits]


async def built_from(state: AppState) -> object:
    await state.rag.list_documents()
    (status,) = state.rag.status()
    return status.detail["built_from"]


async def test_restart_loads_the_snapshot_and_replays_later_changes(settings: Settings) -> None:
    path = snapshot.path_for(settings.data_dir, settings.namespace)
    state = await AppState.open(settings)
    try:
        for doc_id, text in DOCS.items():
            await state.rag.ingest(text, doc_id=doc_id, metadata={"topic": doc_id})
        before = await hits(state, "moon and ocean tides")
    finally:
        await state.close()
    assert path.stat().st_mode & 0o777 == 0o600  # document text: owner-only

    # while this replica is down, another one (no snapshot of its own) changes the data
    other = await AppState.open(without_snapshot(settings))
    try:
        await other.rag.delete_document("bread")
        await other.rag.ingest(
            "Volcanoes erupt molten rock and ash.", doc_id="lava", metadata={"topic": "lava"}
        )
    finally:
        await other.close()

    queries = ["moon and ocean tides", "molten rock", "sourdough yeast", "valleys of ice"]
    state = await AppState.open(settings)
    try:
        assert await built_from(state) == "snapshot"
        listing = await state.rag.list_documents()
        assert sorted(d.id for d in listing.documents) == ["ice", "lava", "tides"]
        assert [h[0] for h in await hits(state, "molten rock")][:1] == ["lava"]
        from_snapshot = [await hits(state, q) for q in queries]
        with pytest.raises(InvalidInputError, match="fields in use: topic"):
            await state.rag.search("x", filter={"colour": "red"})
    finally:
        await state.close()
    assert before[0][0] == "tides"

    rebuilt = await AppState.open(without_snapshot(settings))  # the same data, built from Redis
    try:
        assert await built_from(rebuilt) == "redis"
        assert [await hits(rebuilt, q) for q in queries] == from_snapshot
    finally:
        await rebuilt.close()


async def test_a_snapshot_that_does_not_match_is_rebuilt_from_redis(settings: Settings) -> None:
    path = snapshot.path_for(settings.data_dir, settings.namespace)
    state = await AppState.open(settings)
    try:
        for doc_id, text in DOCS.items():
            await state.rag.ingest(text, doc_id=doc_id)
        expected = await hits(state, "glaciers carve valleys")
    finally:
        await state.close()
    good = path.read_bytes()

    for broken in (good[:-10] + b"0123456789", b"not a snapshot", good.replace(b'"dim": 384', b'"dim": 385')):
        path.write_bytes(broken)
        state = await AppState.open(settings)
        try:
            assert await built_from(state) == "redis"
            assert await hits(state, "glaciers carve valleys") == expected
        finally:
            await state.close()

    # streams trimmed past the snapshot's positions: it cannot be caught up, so it is not used
    path.write_bytes(good)
    other = await AppState.open(without_snapshot(settings))
    try:
        for g in range(SLOT_GROUPS):
            await other.store.client.delete(other.store.keys.changes(g))
        await other.rag.ingest("Deserts get less than 250 mm of rain a year.", doc_id="dry")
    finally:
        await other.close()
    state = await AppState.open(settings)
    try:
        assert await built_from(state) == "redis"
        assert sorted(d.id for d in (await state.rag.list_documents()).documents) == [
            "bread",
            "dry",
            "ice",
            "tides",
        ]
    finally:
        await state.close()


async def test_a_close_with_nothing_new_leaves_the_snapshot_as_it_is(settings: Settings) -> None:
    """A start that loaded a current snapshot and changed nothing (a CLI search, say) does not read
    every chunk back to write the same snapshot again; a change makes the next close write it."""
    path = snapshot.path_for(settings.data_dir, settings.namespace)
    state = await AppState.open(settings)
    try:
        for doc_id, text in DOCS.items():
            await state.rag.ingest(text, doc_id=doc_id)
    finally:
        await state.close()
    written = path.stat().st_mtime_ns
    state = await AppState.open(settings)
    try:
        assert await built_from(state) == "snapshot"
        await hits(state, "glaciers carve valleys")
        assert await state.rag.index.save_snapshot() is None
    finally:
        await state.close()
    assert path.stat().st_mtime_ns == written
    state = await AppState.open(settings)
    try:
        await state.rag.ingest("Deserts get less than 250 mm of rain a year.", doc_id="dry")
        size = await state.rag.index.save_snapshot()
        assert size is not None and size > 0
    finally:
        await state.close()
    assert path.stat().st_mtime_ns != written
