"""RagService against the real Redis and MiniLM: what the MCP layer cannot reach or show."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import anyio
import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag.models import DocumentInput
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState
from mcp_gemma.store.keys import SLOT_GROUPS, group_of

pytestmark = pytest.mark.anyio

TEXT = "Tides are caused by the gravitational pull of the moon and the sun on the oceans. " * 30


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[AppState]:
    opened = await AppState.open(settings)
    try:
        yield opened
    finally:
        await opened.close()


def written_before_answer(settings: Settings) -> Settings:
    """``settings`` with the write-behind queue off: each ingest is written before it returns (for
    the tests of what one write does to the index and the change log)."""
    return settings.model_copy(update={"rag": settings.rag.model_copy(update={"write_behind_documents": 0})})


async def chunk_keys(state: AppState) -> set[bytes]:
    pattern = f"{{{state.store.keys.ns}/*}}:chunk:*"  # the namespace's slot-group tags
    return {k async for k in state.store.client.scan_iter(match=pattern)}


async def test_nan_and_infinity_in_metadata_are_refused(state: AppState) -> None:
    # JSON clients turn NaN into null on the wire; callers inside the process (CLI, agent) can still send it.
    for meta in ({"score": math.nan}, {"a": [1, {"b": -math.inf}]}):
        with pytest.raises(InvalidInputError, match="NaN and infinity are not allowed"):
            await state.rag.ingest("some text", metadata=meta)
    assert (await state.rag.list_documents()).total == 0
    assert await chunk_keys(state) == set()


async def test_concurrent_replacements_leave_no_orphans(settings: Settings) -> None:
    a, b = await AppState.open(settings), await AppState.open(settings)
    try:
        texts = [f"Version {i}: " + TEXT[: 400 + 50 * i] for i in range(6)]
        # load the two embedders one after the other: transformers' lazy imports race across threads
        await a.embeddings.get()
        await b.embeddings.get()
        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for i, text in enumerate(texts):
                    tg.start_soon(lambda s=(a if i % 2 else b), t=text: s.rag.ingest(t, doc_id="same"))
        for side in (a, b):  # each replica's acknowledged versions are written
            await side.rag.pipeline.settled()
        doc = await a.rag.get_document("same", include_chunks=True)
        assert doc.text in texts
        assert doc.chunk_list is not None
        stored = {a.store.keys.chunk(c.chunk_id).encode() for c in doc.chunk_list}
        assert await chunk_keys(a) == stored  # every replaced version's chunks are gone
        for side in (a, b):
            hits = (await side.rag.search("gravitational pull of the moon", limit=50)).hits
            assert {h.chunk_id for h in hits} == {c.chunk_id for c in doc.chunk_list}
            assert (await side.rag.list_documents()).total == 1
    finally:
        await a.close()
        await b.close()


async def test_unchanged_content_costs_no_model_time(state: AppState) -> None:
    docs = [
        DocumentInput(text=f"Document {i}. " + TEXT[:300], id=f"d{i}", metadata={"i": i}) for i in range(20)
    ]
    first = await state.rag.ingest_documents(docs)
    assert first.created == 20
    misses = state.embeddings.misses
    second = await state.rag.ingest_documents(docs)
    assert second.unchanged == 20 and second.chunks == 0
    assert state.embeddings.misses == misses
    page = await state.rag.list_documents(limit=7, filter={"i": {"$gte": 5}})
    assert page.total == 15 and len(page.documents) == 7 and page.next_offset == 7
    last = await state.rag.list_documents(offset=14, limit=7, filter={"i": {"$gte": 5}})
    assert len(last.documents) == 1 and last.next_offset is None


async def test_index_follows_other_processes_and_reports_status(settings: Settings) -> None:
    a, b = await AppState.open(settings), await AppState.open(settings)
    try:
        await a.rag.ingest(TEXT, doc_id="tides", metadata={"topic": "sea"})
        await b.rag.search("moon", limit=1)  # b builds from Redis
        await a.rag.ingest("Glaciers are slow rivers of ice.", doc_id="ice", metadata={"topic": "ice"})
        await a.rag.delete_document("tides")
        hits = (await b.rag.hybrid_search("moon tides ice", limit=10)).hits
        assert {h.doc_id for h in hits} == {"ice"}
        with pytest.raises(InvalidInputError, match="fields in use: topic"):
            await b.rag.search("x", filter={"colour": "red"})
        (status,) = b.rag.status()
        assert status.loaded and status.detail["documents"] == 1 and status.detail["chunks"] == 1
    finally:
        await a.close()
        await b.close()


async def test_own_write_reads_only_its_groups_unless_another_writer_announced_one(
    settings: Settings,
) -> None:
    settings = written_before_answer(settings)
    a, b = await AppState.open(settings), await AppState.open(settings)
    read: list[list[int] | None] = []
    original = a.rag.docstore.changes_after

    async def spy(positions, count=1_000, groups=None):  # type: ignore[no-untyped-def]
        read.append(None if groups is None else sorted(groups))
        return await original(positions, count, groups)

    a.rag.docstore.changes_after = spy  # type: ignore[method-assign]
    ids = [f"doc{i}" for i in range(2_000)]
    one, two, three, four = (next(d for d in ids if group_of(d) == g) for g in (1, 2, 3, 4))
    try:
        await a.rag.ingest("A note about rivers.", doc_id=one)
        read.clear()
        await a.rag.ingest("A note about deserts.", doc_id=two)  # nothing else was announced
        assert read == [[2]]
        await b.rag.ingest("A note about glaciers.", doc_id=three)  # another writer, another group
        read.clear()
        await a.rag.ingest("A note about forests.", doc_id=four)
        assert read[0] is None  # the counter moved by two: every group is read
        assert sorted(a.rag.index.docs) == sorted([one, two, three, four])  # without another sync
    finally:
        await a.close()
        await b.close()


async def test_index_rebuilds_when_the_stream_was_trimmed_past_it(settings: Settings) -> None:
    settings = written_before_answer(settings)
    a, b = await AppState.open(settings), await AppState.open(settings)
    try:
        await a.rag.ingest("Seed document about rivers.", doc_id="seed")
        await b.rag.list_documents()  # b is now at the stream's end
        for i in range(3):
            await a.rag.ingest(f"Document {i} about mountains.", doc_id=f"m{i}")
        # as if trimmed before b caught up
        await a.store.client.delete(*(a.store.keys.changes(g) for g in range(SLOT_GROUPS)))
        await a.rag.ingest("Late document about deserts.", doc_id="late")
        b.rag.index._last_gap_check = 0.0  # the check runs every few seconds; force it now
        listing = await b.rag.list_documents()
        assert sorted(d.id for d in listing.documents) == ["late", "m0", "m1", "m2", "seed"]
    finally:
        await a.close()
        await b.close()


async def test_auto_quantize_turns_the_int8_pass_on_at_size_and_off_below_half(settings: Settings) -> None:
    tuned = settings.model_copy(
        update={"rag": settings.rag.model_copy(update={"quantize": "auto", "quantize_min_chunks": 4})}
    )
    state = await AppState.open(tuned)
    try:
        topics = ["tides and the moon", "glaciers and ice", "deserts and sand", "forests and trees"]
        for i, topic in enumerate(topics[:3]):
            await state.rag.ingest(f"A short note about {topic}.", doc_id=f"d{i}")
        assert state.rag.status()[0].detail["quantized"] is False
        await state.rag.ingest(f"A short note about {topics[3]}.", doc_id="d3")
        hits = (await state.rag.search("ice", limit=1)).hits
        assert hits[0].doc_id == "d1"
        assert state.rag.status()[0].detail["quantized"] is True
        await state.rag.delete_document("d3")
        await state.rag.delete_document("d2")  # 2 chunks: still at half the threshold, stays on
        await state.rag.search("ice", limit=1)
        assert state.rag.status()[0].detail["quantized"] is True
        await state.rag.delete_document("d0")
        hits = (await state.rag.search("ice", limit=1)).hits
        assert hits[0].doc_id == "d1" and hits[0].score > 0.3
        assert state.rag.status()[0].detail["quantized"] is False
    finally:
        await state.close()


async def test_embedding_preload_loads_in_the_background_once(settings: Settings) -> None:
    preloading = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"preload": True})}
    )
    state = await AppState.open(preloading)
    try:
        preload = state.embeddings._preload
        assert preload is not None
        with anyio.fail_after(120):  # nothing has asked for an embedding yet
            await anyio.to_thread.run_sync(preload.wait)
        assert state.embeddings.loaded
        loaded = state.embeddings._embedder
        await state.rag.ingest("Glaciers are slow rivers of ice.", doc_id="ice")
        assert (await state.rag.search("ice", limit=1)).hits[0].doc_id == "ice"
        assert state.embeddings._embedder is loaded  # the query used the preloaded model
    finally:
        await state.close()


async def test_a_head_and_the_count_are_read_together_also_after_a_script_flush(state: AppState) -> None:
    await state.rag.ingest_documents(
        [DocumentInput(text="First note about tides.", id="a"), DocumentInput(text="Second note.", id="b")]
    )
    store = state.rag.docstore
    head, stored = await store.head_and_count("a")
    assert head is not None and (head.id, head.chars, stored) == ("a", len("First note about tides."), 2)
    # a restarted Redis has lost the scripts: the count is taken the long way, which loads it again
    await state.store.client.script_flush()
    assert await store.head_and_count("nothing-here") == (None, 2)
    assert store._count_docs is not None
    assert await state.store.client.script_exists(store._count_docs.sha) == [True]  # loaded again
    assert (await store.head_and_count("b"))[1] == 2
