"""The index snapshot on real Redis and MiniLM: saved on close, loaded at start with the changes after
it replayed, and discarded (rebuilt from Redis) whenever it does not match."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from mcp_gemma.embeddings.service import content_hash
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


async def saved_snapshot(settings: Settings) -> tuple[Path, list[tuple[str, str]]]:
    """Ingest :data:`DOCS`, search once, close (which writes the snapshot): its path and the hits."""
    path = snapshot.path_for(settings.data_dir, settings.namespace)
    state = await AppState.open(settings)
    try:
        for doc_id, text in DOCS.items():
            await state.rag.ingest(text, doc_id=doc_id)
        expected = await hits(state, "glaciers carve valleys")
    finally:
        await state.close()
    return path, expected


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
    path, expected = await saved_snapshot(settings)
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
        await state.rag.pipeline.settled()  # queued by the write-behind until then
        size = await state.rag.index.save_snapshot()
        assert size is not None and size > 0
    finally:
        await state.close()
    assert path.stat().st_mtime_ns != written


MORE = {
    "volcano": "Volcanoes erupt molten rock, ash and gas when pressure in the magma chamber builds up.",
    "coral": "Coral reefs are built by tiny animals that live in warm, shallow and clear sea water.",
    "desert": "Deserts get less than 250 mm of rain a year; some are cold, like the Antarctic plateau.",
    "storm": "Thunderstorms form when warm moist air rises fast and condenses into towering clouds.",
    "moon": "The moon keeps the same face towards the earth because its rotation is tidally locked.",
}
QUERIES = ["moon and ocean tides", "molten rock", "sourdough yeast", "valleys of ice", "warm sea water"]


async def answers(state: AppState) -> list[object]:
    """Every kind of search, whole hits (ids, scores, texts), plus the graph's own candidates."""
    index = state.rag.index
    out: list[object] = []
    for q in QUERIES:
        out.append([h.model_dump() for h in (await state.rag.hybrid_search(q, limit=6)).hits])
        out.append([h.model_dump() for h in (await state.rag.search(q, limit=6)).hits])
        out.append(await index.keyword_search(q, 6, None))
    graph = index.ann.graph
    assert graph is not None
    for cid in sorted(index.chunks)[:4]:
        vec = index.vector_of(cid)
        assert vec is not None
        out.append(graph.candidates(vec, 5, ef=16).tolist())
        out.append(await index.vector_search(vec, 5, None))
    return out


async def test_a_restart_from_the_snapshot_answers_exactly_as_before(settings: Settings) -> None:
    """The BM25 postings, the vectors with their int8 codes and the HNSW graph come back from the file
    (no graph build after the restart), and every search gives the same ids and scores."""
    ann = settings.model_copy(update={"rag": settings.rag.model_copy(update={"ann": True, "quantize": True})})
    state = await AppState.open(ann)
    try:
        for doc_id, text in {**DOCS, **MORE}.items():
            await state.rag.ingest(text, doc_id=doc_id, metadata={"topic": doc_id})
        with anyio.fail_after(120):
            while state.rag.status()[0].detail["ann"] != "ready":
                await state.rag.index.ann.wait_built(60)
                await state.rag.index.sync()
        before = await answers(state)
        nbytes = state.rag.index.vectors.nbytes
        queries = await state.embeddings.embed(QUERIES)
    finally:
        await state.close()

    state = await AppState.open(ann)
    try:
        # The queries' vectors of the first run go into this one's embedding cache, so what is
        # compared is the index alone: MiniLM loaded anew can differ in the last bits of a vector
        # (the BLAS threads at the time), which would move every cosine by an ulp.
        state.embeddings._remember([content_hash(q) for q in QUERIES], queries)
        assert np.array_equal(await state.embeddings.embed(QUERIES), queries)
        assert await built_from(state) == "snapshot"
        detail = state.rag.status()[0].detail
        assert (detail["ann"], detail["quantized"], detail["vector_bytes"]) == ("ready", True, nbytes)
        assert state.rag.index.ann.builds == 0  # the graph was read, not built
        assert await answers(state) == before
    finally:
        await state.close()


def rewritten(good: bytes, change: Callable[[dict[str, Any], bytearray, int], None]) -> bytes:
    """``good`` with its header and body changed by ``change`` and the checksum made to match again,
    so only the check being tested can refuse it."""
    end = good.index(b"\n", len(snapshot.MAGIC))
    header = json.loads(good[len(snapshot.MAGIC) : end])
    body = bytearray(good[end + 1 :])
    change(header, body, sum(size for name, size in header["sections"] if name == "meta"))
    header["sha256"] = hashlib.sha256(body).hexdigest()
    return snapshot.MAGIC + json.dumps(header).encode() + b"\n" + bytes(body)


def set_version_of_vectors(header: dict[str, Any], body: bytearray, at: int) -> None:
    body[at + 8] = 9  # the VectorIndex section's own format version


def cut_the_keywords(header: dict[str, Any], body: bytearray, at: int) -> None:
    sizes = dict(header["sections"])
    start = at + sizes["vectors"]
    del body[start + sizes["keywords"] - 5 : start + sizes["keywords"]]
    header["sections"] = [[n, s - 5 if n == "keywords" else s] for n, s in header["sections"]]


def older_format(header: dict[str, Any], body: bytearray, at: int) -> None:
    header["format"] = 1


def sections_that_do_not_add_up(header: dict[str, Any], body: bytearray, at: int) -> None:
    header["sections"][0][1] += 1


@pytest.mark.parametrize(
    "change", [set_version_of_vectors, cut_the_keywords, older_format, sections_that_do_not_add_up]
)
async def test_a_snapshot_whose_sections_do_not_read_back_is_rebuilt_from_redis(
    settings: Settings, change: Callable[[dict[str, Any], bytearray, int], None]
) -> None:
    path, expected = await saved_snapshot(settings)
    path.write_bytes(rewritten(path.read_bytes(), change))
    state = await AppState.open(settings)
    try:
        assert await built_from(state) == "redis"
        assert await hits(state, "glaciers carve valleys") == expected
    finally:
        await state.close()
