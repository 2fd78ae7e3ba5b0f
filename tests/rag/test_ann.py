"""The optional HNSW graph (``rag.ann``): background build, changes during a build, tombstone rebuilds,
the auto switch, and searches through a real MCP client served from the graph."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest
from mcp import Client

from mcp_gemma import native
from mcp_gemma.rag.ann import REBUILD_TOMBSTONES, AnnMirror
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState, SharedState

pytestmark = pytest.mark.anyio
DIM = 48


def clustered(n: int, seed: int) -> np.ndarray:
    """Embedding-like rows: noisy points around a few hundred centres (not uniform noise)."""
    centres = np.random.default_rng(0).standard_normal((256, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = centres[rng.integers(0, 256, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows.astype(np.float32)


def ids_of(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.uint64)


def recall(mirror: AnnMirror, exact: native.VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    found = 0
    for q in queries:
        served = mirror.search(q, k, exact)
        assert served is not None
        want, _ = exact.search(q, k)
        found += len(set(served[0].tolist()) & set(want.tolist()))
    return found / (k * len(queries))


async def settle(mirror: AnnMirror, exact: native.VectorIndex) -> None:
    with anyio.fail_after(120):
        assert await mirror.wait_built(120)
    await mirror.maintain(exact)


async def test_changes_made_during_a_build_are_in_the_graph_it_installs() -> None:
    settings = RagSettings(ann=True, ann_ef_construction=100)
    exact = native.VectorIndex(DIM, "cosine")
    exact.add(ids_of(0, 30_000), clustered(30_000, 1))
    mirror = AnnMirror(DIM, settings)
    await mirror.maintain(exact)
    assert mirror.state == "building"
    assert mirror.search(clustered(1, 9)[0], 5, exact) is None  # exact scans serve until the graph is ready

    # While the thread builds from its snapshot: new rows, replaced rows and removals.
    late = clustered(500, 2)
    exact.add(ids_of(30_000, 500), late)
    mirror.added(ids_of(30_000, 500), late)
    replaced = clustered(100, 3)
    exact.add(ids_of(0, 100), replaced)
    mirror.added(ids_of(0, 100), replaced)
    gone = ids_of(1_000, 2_000)
    exact.remove(gone)
    mirror.removed(gone)

    await settle(mirror, exact)
    assert mirror.state == "ready"
    graph = mirror.graph
    assert graph is not None and len(graph) == len(exact) == 28_500
    assert all(i in graph for i in (0, 99, 30_000, 30_499)) and 1_500 not in graph
    found = 0
    for i in range(0, 500, 10):  # rows added mid-build find themselves (the graph is approximate)
        served = mirror.search(late[i], 1, exact)
        assert served is not None
        if int(served[0][0]) == 30_000 + i:
            found += 1
            assert served[1][0] == pytest.approx(1.0, abs=1e-5)  # scores are exact cosines
    assert found >= 45
    assert recall(mirror, exact, clustered(50, 4)) >= 0.9  # measured: 1.0


async def test_tombstones_trigger_a_rebuild_and_auto_turns_the_graph_off() -> None:
    settings = RagSettings(ann="auto", ann_min_chunks=2_000, ann_ef_construction=64)
    exact = native.VectorIndex(DIM, "cosine")
    exact.add(ids_of(0, 1_999), clustered(1_999, 5))
    mirror = AnnMirror(DIM, settings)
    await mirror.maintain(exact)
    assert mirror.state == "off"  # below ann_min_chunks
    exact.add(ids_of(1_999, 2_001), clustered(2_001, 6))
    await mirror.maintain(exact)
    await settle(mirror, exact)
    first = mirror.graph
    assert mirror.state == "ready" and first is not None and len(first) == 4_000

    dead = ids_of(0, int(4_000 * REBUILD_TOMBSTONES) + 10)
    exact.remove(dead)
    mirror.removed(dead)
    assert first.tombstones == len(dead)
    await mirror.maintain(exact)
    assert mirror.state == "ready, rebuilding" and mirror.graph is first  # the old graph serves meanwhile
    await settle(mirror, exact)
    assert mirror.graph is not first and mirror.graph is not None
    assert mirror.graph.tombstones == 0 and len(mirror.graph) == len(exact)

    exact.remove(ids_of(0, 3_100))  # 900 left: below half of ann_min_chunks
    await mirror.maintain(exact)
    assert mirror.state == "off" and mirror.graph is None


async def test_a_failed_build_is_reported_and_exact_search_keeps_serving() -> None:
    exact = native.VectorIndex(DIM, "cosine")
    exact.add(ids_of(0, 10), clustered(10, 7))
    mirror = AnnMirror(DIM + 1, RagSettings(ann=True))  # a graph of the wrong width cannot take the rows
    await mirror.maintain(exact)
    await settle(mirror, exact)
    assert mirror.graph is None
    assert mirror.last_error is not None and "shape" in mirror.last_error
    await mirror.maintain(exact)
    assert mirror.state == "off"  # no retry on every sync: the next try waits RETRY_AFTER_S


@pytest.fixture
async def ann_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rag": settings.rag.model_copy(update={"ann": True})})


async def wait_for_graph(state: AppState) -> None:
    with anyio.fail_after(120):
        while state.rag.status()[0].detail["ann"] != "ready":
            await state.rag.index.ann.wait_built(60)
            await state.rag.index.sync()


@pytest.fixture
async def ann_state(ann_settings: Settings) -> AsyncIterator[AppState]:
    opened = await AppState.open(ann_settings)
    try:
        yield opened
    finally:
        await opened.close()


async def test_searches_through_an_mcp_client_are_served_from_the_graph(ann_settings: Settings) -> None:
    topics = {
        "tides": "Tides rise and fall with the pull of the moon on the oceans.",
        "glaciers": "Glaciers are slow rivers of ice that carve valleys.",
        "deserts": "Deserts get less than 250 millimetres of rain a year.",
        "volcanoes": "Volcanoes erupt molten rock, ash and gas from the crust.",
    }
    holder = SharedState(ann_settings)
    async with Client(create_server(ann_settings, holder)) as client:
        docs = [
            {"id": k, "text": v, "metadata": {"kind": "geo" if k != "tides" else "sea"}}
            for k, v in topics.items()
        ]
        ingested = await client.call_tool("batch_ingest", {"documents": docs})
        assert ingested.is_error is False, ingested.content
        state = holder._state
        assert state is not None
        await wait_for_graph(state)
        graph = state.rag.index.ann.graph
        assert graph is not None and len(graph) == 4

        hits = await client.call_tool("search_documents", {"query": "ice carving valleys", "limit": 2})
        assert hits.is_error is False, hits.content
        assert hits.structured_content["hits"][0]["doc_id"] == "glaciers"
        # A filter is answered by the exact scan: the graph cannot restrict its walk to an allow list.
        filtered = await client.call_tool(
            "search_documents", {"query": "ice carving valleys", "limit": 2, "filter": {"kind": "sea"}}
        )
        assert [h["doc_id"] for h in filtered.structured_content["hits"]] == ["tides"]
        hybrid = await client.call_tool("hybrid_search", {"query": "molten rock eruption", "limit": 1})
        assert hybrid.structured_content["hits"][0]["doc_id"] == "volcanoes"

        deleted = await client.call_tool("delete_document", {"id": "glaciers"})
        assert deleted.is_error is False, deleted.content
        hits = await client.call_tool("search_documents", {"query": "ice carving valleys", "limit": 4})
        assert "glaciers" not in {h["doc_id"] for h in hits.structured_content["hits"]}
        assert graph.tombstones >= 1  # the graph itself answered, without the deleted chunk

        health = await client.call_tool("health_check", {})
        detail = next(c for c in health.structured_content["components"] if c["kind"] == "vector_index")[
            "detail"
        ]
        assert detail["ann"] in {"ready", "ready, rebuilding"} and detail["ann_error"] is None


async def test_graph_results_match_the_exact_scan_on_a_small_corpus(ann_state: AppState) -> None:
    texts = [
        f"Note {i}: " + t for i, t in enumerate(["moon and tides", "ice and glaciers", "sand and dunes"] * 20)
    ]
    for i, text in enumerate(texts):
        await ann_state.rag.ingest(text, doc_id=f"n{i}")
    await wait_for_graph(ann_state)
    index = ann_state.rag.index
    query = await ann_state.embeddings.embed_one("glaciers of ice")
    served = await index.vector_search(query, 10, None)
    ids, scores = index.vectors.search(query, 10, None)
    assert [i for i, _ in served] == ids.tolist()  # 60 rows: the graph walk is exhaustive
    assert [s for _, s in served] == pytest.approx(scores.tolist(), abs=1e-6)


async def test_a_saved_graph_is_served_only_when_built_with_the_current_settings() -> None:
    """AnnMirror.restore (an index snapshot's graph): served as it is when its m and ef_construction are
    the settings', dropped otherwise, so maintain() builds one that follows them."""
    exact = native.VectorIndex(DIM, "cosine")
    exact.add(ids_of(0, 300), clustered(300, 4))
    ids, rows = exact.snapshot()
    settings = RagSettings(ann=True)
    saved = native.HnswIndex(
        DIM, "cosine", m=settings.ann_m, ef_construction=settings.ann_ef_construction, keep_rows=False
    )
    saved.add(ids, rows)
    mirror = AnnMirror(DIM, settings)
    mirror.restore(native.HnswIndex.from_bytes(saved.to_bytes()))
    assert mirror.state == "ready" and mirror.builds == 0
    await mirror.maintain(exact)
    assert mirror.state == "ready" and mirror.builds == 0  # nothing to build
    q = clustered(1, 9)[0]
    served = mirror.search(q, 5, exact)
    want = exact.search(q, 5, saved.candidates(q, 5, ef=max(settings.ann_ef_search, 5)))
    assert served is not None
    assert (served[0].tolist(), served[1].tolist()) == (want[0].tolist(), want[1].tolist())
    other = native.HnswIndex(DIM, "cosine", m=settings.ann_m // 2, keep_rows=False)
    other.add(ids, rows)
    mirror.restore(other)
    assert mirror.graph is None
    await mirror.maintain(exact)
    assert mirror.state == "building" and mirror.builds == 1
    await settle(mirror, exact)
    assert mirror.graph is not None and mirror.graph.m == settings.ann_m and len(mirror.graph) == 300
