"""The write-behind queue of one-document ingests (mcp_gemma.rag.behind), on the real Redis and
MiniLM: calls answer before their documents are embedded, the queue is embedded in batches, reads
wait for it, and what was acknowledged survives a process that stops before writing it.

Where a test must hold the writer still, it wraps the real embedding call in a gate (an event the
test sets) or makes the real ``DocStore.write`` raise; each such stand-in says so where it is made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.rag.behind import Record
from mcp_gemma.rag.ingest import text_hash
from mcp_gemma.rag.validation import metadata_json
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState

pytestmark = pytest.mark.anyio

TOPICS = [
    "Tides rise and fall twice a day because the moon pulls on the oceans.",
    "Glaciers carve U-shaped valleys as they grind slowly downhill.",
    "Deserts receive less than 250 millimetres of rain in a year.",
    "Coral reefs grow in warm, shallow and clear tropical seas.",
    "Volcanoes erupt when molten rock rises through the crust.",
    "Rainforests hold more than half of the world's plant and animal species.",
]


def gate_embedding(state: AppState, entered: anyio.Event | None = None) -> tuple[anyio.Event, list[int]]:
    """Stand-in: the real embedding call, held until the returned event is set; the list records
    how many texts each call embedded, and ``entered`` is set once a call waits."""
    gate = anyio.Event()
    calls: list[int] = []
    real = state.embeddings.embed

    async def gated(texts: Sequence[str], progress: Any = None) -> Any:
        calls.append(len(texts))
        if entered is not None:
            entered.set()
        await gate.wait()
        return await real(texts, progress)

    state.embeddings.embed = gated  # type: ignore[method-assign]
    return gate, calls


async def queued_in_redis(state: AppState) -> dict[str, Any]:
    raw = await state.store.client.hgetall(state.store.keys.ingest_queue())
    return {k.decode(): json.loads(v) for k, v in raw.items()}


async def test_calls_answer_before_embedding_and_the_queue_is_embedded_in_one_batch(
    settings: Settings,
) -> None:
    state = await AppState.open(settings)
    try:
        await state.embeddings.get()
        gate, calls = gate_embedding(state)
        reports = []
        for i, text in enumerate(TOPICS):  # one call at a time, as a client sends them
            reports.append(await state.rag.ingest(text, doc_id=f"t{i}"))
        # every call answered while the embedder was held: the first document is in its pass, the
        # other five wait in the queue, and all six are recorded in Redis
        assert [r.status for r in reports] == ["created"] * 6
        assert [r.chunks for r in reports] == [1] * 6
        assert [r.content_hash for r in reports] == [text_hash(t) for t in TOPICS]
        assert calls == [1]
        assert sorted(await queued_in_redis(state)) == [f"t{i}" for i in range(6)]
        assert state.rag.status()[0].detail["write_behind_queued"] == 6
        acknowledged = time.time()
        gate.set()
        # a read waits for the queue: each document is found by its own topic
        for i, query in enumerate(["moon and oceans", "valleys cut by ice", "little rain", "reefs"]):
            hits = (await state.rag.search(query, limit=1)).hits
            assert hits[0].doc_id == f"t{i}"
        # the five queued documents took one embedding call; each query one (the first query is
        # embedded while the queue is written, and read once it is)
        assert calls == [1, 1, 5, 1, 1, 1]
        listing = await state.rag.list_documents()
        # each document's times are its acknowledgement's (newest first), not its write's
        assert [d.id for d in listing.documents] == [f"t{i}" for i in reversed(range(6))]
        assert all(d.created_at == d.updated_at <= acknowledged for d in listing.documents)
        assert await queued_in_redis(state) == {}
        detail = state.rag.status()[0].detail
        assert (detail["write_behind_queued"], detail["write_behind_written"]) == (0, 6)
    finally:
        await state.close()


async def test_a_queued_document_answers_unchanged_and_is_replaced_in_place(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        await state.rag.ingest("A first note that is written before the gate.", doc_id="first")
        await state.rag.pipeline.settled()
        gate, calls = gate_embedding(state)
        await state.rag.ingest("Warm-up document held in the embedder.", doc_id="held")
        first = await state.rag.ingest(TOPICS[0], doc_id="x", metadata={"v": 1})
        again = await state.rag.ingest(TOPICS[0], doc_id="x", metadata={"v": 1})
        newer = await state.rag.ingest(TOPICS[1], doc_id="x", metadata={"v": 2})
        stored = await state.rag.ingest("A first note that is written before the gate.", doc_id="first")
        assert (first.status, again.status, newer.status, stored.status) == (
            "created",
            "unchanged",
            "replaced",
            "unchanged",
        )
        assert (await queued_in_redis(state))["x"]["hash"] == text_hash(TOPICS[1])
        gate.set()
        doc = await state.rag.get_document("x", include_chunks=True)
        assert (doc.text, doc.metadata) == (TOPICS[1], {"v": 2})
        assert calls == [1, 1]  # the older version of x was never embedded
        assert (await state.rag.list_documents()).total == 3
    finally:
        await state.close()


async def test_acknowledged_documents_left_by_a_stopped_process_are_written_by_the_next(
    settings: Settings,
) -> None:
    first = await AppState.open(settings)
    entered = anyio.Event()
    gate, _ = gate_embedding(first, entered)
    for i, text in enumerate(TOPICS[:3]):
        await first.rag.ingest(text, doc_id=f"t{i}", metadata={"i": i})
    await entered.wait()  # the writer holds t0 in the embedder
    behind = first.rag.pipeline.behind
    assert behind is not None and behind._writer is not None
    behind._writer.cancel()  # the process dies with its queue unwritten (the gate is never set)
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await behind._writer
    assert sorted(await queued_in_redis(first)) == ["t0", "t1", "t2"]
    await first.close()
    assert gate.is_set() is False

    second = await AppState.open(settings)
    try:
        # the stopped process's "alive" mark expires ALIVE_MS after its last call; here at once
        await second.store.client.delete(second.store.keys.ingest_owner(behind.owner))
        listing = await second.rag.list_documents()
        assert sorted(d.id for d in listing.documents) == ["t0", "t1", "t2"]
        for i, text in enumerate(TOPICS[:3]):
            doc = await second.rag.get_document(f"t{i}")
            assert (doc.text, doc.metadata, doc.chunks) == (text, {"i": i}, 1)
        assert (await second.rag.search("valleys cut by ice", limit=1)).hits[0].doc_id == "t1"
        assert await queued_in_redis(second) == {}
    finally:
        await second.close()


async def test_a_queued_version_does_not_overwrite_one_acknowledged_later_by_another_replica(
    settings: Settings,
) -> None:
    first, second = await AppState.open(settings), await AppState.open(settings)
    try:
        await first.embeddings.get()
        entered = anyio.Event()
        gate, _ = gate_embedding(first, entered)
        older = await first.rag.ingest(TOPICS[0], doc_id="x", metadata={"v": 1})
        await entered.wait()  # first's writer holds its version of x in the embedder
        # another replica is sent a newer version, later: it finds nothing stored and writes it
        newer = await second.rag.ingest(TOPICS[1], doc_id="x", metadata={"v": 2})
        assert (older.status, newer.status) == ("created", "created")
        behind = second.rag.pipeline.behind
        assert behind is not None
        await behind.settled()  # second's own queue written (its reads would also wait for first's)
        gate.set()
        await first.rag.pipeline.settled()
        # the version acknowledged last stands, in Redis and in both replicas' indexes
        for state in (first, second):
            doc = await state.rag.get_document("x")
            assert (doc.text, doc.metadata) == (TOPICS[1], {"v": 2})
            assert (await state.rag.search("valleys cut by ice", limit=1)).hits[0].doc_id == "x"
            assert (await state.rag.search("moon and oceans", limit=1)).hits[0].text == TOPICS[1]
        assert await queued_in_redis(first) == {}
    finally:
        await first.close()
        await second.close()


async def test_an_entry_older_than_the_stored_document_is_not_replayed(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        await state.rag.ingest(TOPICS[0], doc_id="x")
        await state.rag.pipeline.settled()
    finally:
        await state.close()
    # what a process that died long ago left for x, older than the version stored since
    stale = {
        "text": TOPICS[5],
        "metadata": None,
        "source": "text",
        "meta": metadata_json(None, settings.rag.max_metadata_bytes, settings.rag.max_metadata_depth),
        "hash": text_hash(TOPICS[5]),
        "at": time.time() - 3600,
        "owner": "a-process-that-is-gone",
    }
    later = await AppState.open(settings)
    try:
        await later.store.client.hset(later.store.keys.ingest_queue(), "x", json.dumps(stale))
        later.rag.pipeline._recovered = False  # as if this process had only now started
        doc = await later.rag.get_document("x")
        assert doc.text == TOPICS[0]
        assert await queued_in_redis(later) == {}
    finally:
        await later.close()


def test_a_record_decodes_to_what_was_encoded_and_a_bad_one_says_why() -> None:
    rec = Record("Zürich ✓", {"k": [1, 2]}, "notes.md", '{"k":[1,2]}', "ab" * 32, 1700000000.5, "p1")
    assert Record.decode(rec.encode()) == rec
    assert "Zürich ✓".encode() in rec.encode()  # stored as UTF-8, not escaped
    assert Record.decode(json.dumps({**json.loads(rec.encode()), "source": ""}).encode()).source == "text"
    whole = json.loads(rec.encode())
    bad = {
        b"\xff\xfe": "not JSON",
        b"[1, 2]": "not a JSON object",
        json.dumps({k: v for k, v in whole.items() if k != "hash"}).encode(): "'hash' is missing",
        json.dumps({**whole, "text": 3}).encode(): "'text' is missing or not a string",
        json.dumps({**whole, "at": True}).encode(): "'at' is missing or not a number",
        json.dumps({**whole, "metadata": [1]}).encode(): "'metadata' is not an object",
    }
    for raw, why in bad.items():
        with pytest.raises(ValueError, match=why):
            Record.decode(raw)


async def test_an_unreadable_record_is_dropped_and_the_others_are_written(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    later = await AppState.open(settings)
    try:
        good = Record(
            TOPICS[1],
            None,
            "text",
            metadata_json(None, settings.rag.max_metadata_bytes, settings.rag.max_metadata_depth),
            text_hash(TOPICS[1]),
            time.time(),
            "a-process-that-is-gone",
        )
        # what a stopped process left: one good record and one that a bug or a hand edit broke
        queue = later.store.keys.ingest_queue()
        await later.store.client.hset(queue, mapping={"good": good.encode(), "broken": b'{"text": 1}'})
        later.rag.pipeline._recovered = False  # as if this process had only now started
        listed = await later.rag.list_documents()
        assert [d.id for d in listed.documents] == ["good"]
        said = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
        why = "'text' is missing or not a string"
        assert said == [f"write-behind: dropping an unreadable queued entry for 'broken': {why}"]
        assert (await later.rag.get_document("good")).text == TOPICS[1]
        assert await queued_in_redis(later) == {}
    finally:
        await later.close()


async def test_a_failing_write_is_reported_to_readers_and_retried(settings: Settings) -> None:
    import redis.exceptions as rexc

    state = await AppState.open(settings)
    try:
        await state.rag.ingest(TOPICS[0], doc_id="kept-before")
        await state.rag.pipeline.settled()
        docstore = state.rag.docstore
        real_write = docstore.write
        down = True

        async def write(docs: Any) -> Any:  # stand-in: Redis refuses the write while `down`
            if down:
                raise rexc.ConnectionError("Connection refused (simulated)")
            return await real_write(docs)

        docstore.write = write  # type: ignore[method-assign]
        report = await state.rag.ingest(TOPICS[2], doc_id="later")
        assert report.status == "created"
        with pytest.raises(StoreUnavailableError, match=r"1 acknowledged document\(s\) are waiting"):
            await state.rag.search("little rain", limit=1)
        assert "Connection refused" in str(state.rag.status()[0].detail["write_behind_error"])
        assert "later" in await queued_in_redis(state)
        down = False
        with anyio.fail_after(60):
            hits = (await state.rag.search("little rain", limit=1)).hits
        assert hits[0].doc_id == "later"
        assert state.rag.status()[0].detail["write_behind_error"] is None
        assert sorted(d.id for d in (await state.rag.list_documents()).documents) == ["kept-before", "later"]
    finally:
        await state.close()


async def test_a_clean_shutdown_writes_the_queue(settings: Settings) -> None:
    state = await AppState.open(settings)
    for i, text in enumerate(TOPICS):
        await state.rag.ingest(text, doc_id=f"t{i}")
    await state.close()
    again = await AppState.open(settings)
    try:
        assert await queued_in_redis(again) == {}
        behind = again.rag.pipeline.behind
        assert behind is not None and len(behind) == 0
        assert (await again.rag.list_documents()).total == 6
    finally:
        await again.close()


async def test_the_quota_counts_queued_documents(settings: Settings) -> None:
    from mcp_gemma.errors import QuotaExceededError

    tight = settings.model_copy(update={"rag": settings.rag.model_copy(update={"max_documents": 2})})
    state = await AppState.open(tight)
    try:
        await state.embeddings.get()
        gate, _ = gate_embedding(state)
        await state.rag.ingest(TOPICS[0], doc_id="a")
        await state.rag.ingest(TOPICS[1], doc_id="b")
        with pytest.raises(QuotaExceededError, match="holds 2 documents"):
            await state.rag.ingest(TOPICS[2], doc_id="c")
        await state.rag.ingest(TOPICS[3], doc_id="a")  # a replacement adds nothing
        gate.set()
        assert sorted(d.id for d in (await state.rag.list_documents()).documents) == ["a", "b"]
    finally:
        await state.close()


async def test_off_writes_before_answering(settings: Settings) -> None:
    off = settings.model_copy(update={"rag": settings.rag.model_copy(update={"write_behind_documents": 0})})
    state = await AppState.open(off)
    try:
        assert state.rag.pipeline.behind is None
        await state.rag.ingest(TOPICS[0], doc_id="a")
        assert sorted(state.rag.index.docs) == ["a"]  # in the index without a read
        assert "write_behind_queued" not in state.rag.status()[0].detail
    finally:
        await state.close()


async def test_a_call_cancelled_while_recording_still_queues_what_it_recorded(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        behind = state.rag.pipeline.behind
        assert behind is not None
        entered, release, recorded = anyio.Event(), anyio.Event(), anyio.Event()
        real_record = behind._record

        async def slow_record(*args: Any) -> None:  # stand-in: the real record, once the test allows
            entered.set()
            await release.wait()
            await real_record(*args)
            recorded.set()  # queued before this task next yields (an uncontended lock does not)

        behind._record = slow_record  # type: ignore[method-assign]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: state.rag.ingest(TOPICS[4], doc_id="cancelled"))
                await entered.wait()
                scope.cancel()  # the client gave up on the call while its record was being written
        release.set()
        with anyio.fail_after(30):  # the shielded record-and-queue step finishes on its own
            await recorded.wait()
        assert behind.pending("cancelled") is not None
        # the record was written and queued all the same: nothing waits for a record no queue holds
        doc = await state.rag.get_document("cancelled")
        assert doc.text == TOPICS[4]
        assert await queued_in_redis(state) == {}
    finally:
        await state.close()
