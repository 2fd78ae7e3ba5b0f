"""One-document ingests answered through a real HTTP server that is then killed (SIGKILL) with its
write-behind queue still being written: a fresh server over the same Redis writes what was
acknowledged, and a client finds every document. And two servers sent the same document in turn,
the first one's queued version written last: the version sent last stands."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from mcp import Client

from mcp_gemma.settings import Settings
from mcp_gemma.store.keys import Keys, group_of

from .conftest import SpawnedServer, _write_ns_config

pytestmark = pytest.mark.anyio

PLACES = ["harbour", "glacier", "desert", "forest", "volcano", "reef", "valley", "marsh"]


def note(i: int) -> str:
    place = PLACES[i % len(PLACES)]
    return f"Field note {i}: the {place} was surveyed on day {i} and the {place} survey found {i * 7} birds."


def shared_redis(settings: Settings, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    """The test Redis's URL and the ``serve`` arguments of a server on it, in the test's namespace."""
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    return url, ("--redis-url", url, "--config", str(_write_ns_config(tmp_path, settings)))


async def test_ingests_acknowledged_before_a_kill_are_written_by_the_next_server(
    settings: Settings, tmp_path: Path
) -> None:
    url, args = shared_redis(settings, tmp_path)
    n = 40
    first = SpawnedServer("http", tmp_path / "first", *args)
    try:
        with anyio.fail_after(240):
            async with Client(first.url) as client:
                for i in range(n):  # one call at a time, no read: the queue is still being written
                    result = await client.call_tool("ingest_document", {"text": note(i), "id": f"n{i}"})
                    assert not result.is_error, result.content
                    assert result.structured_content is not None
                    assert result.structured_content["status"] == "created"
        first.proc.kill()
        first.proc.wait()
    finally:
        first.stop()

    second = SpawnedServer("http", tmp_path / "second", *args)
    try:
        with anyio.fail_after(240):
            async with Client(second.url) as client:
                listing = await client.call_tool("list_documents", {"limit": 100})
                assert listing.structured_content is not None
                ids = sorted(d["id"] for d in listing.structured_content["documents"])
                assert ids == sorted(f"n{i}" for i in range(n))
                doc = await client.call_tool("get_document", {"id": "n37"})
                assert doc.structured_content is not None
                assert doc.structured_content["text"] == note(37)
                # a note's own text is its nearest chunk (cosine 1): its vector was written too
                hits = await client.call_tool("search_documents", {"query": note(21), "limit": 1})
                assert hits.structured_content is not None
                assert hits.structured_content["hits"][0]["doc_id"] == "n21"
    finally:
        second.stop()
    raw = aioredis.Redis.from_url(url)
    try:
        assert await raw.hlen(Keys(settings.namespace).ingest_queue()) == 0
    finally:
        await raw.aclose()


def report(i: int) -> str:
    """A ~1 KB document (a couple of chunks): what keeps a server's embedder busy for a while."""
    place = PLACES[i % len(PLACES)]
    line = f"Survey report {i} from the {place}: counts of birds, plants and insects on transect {i}. "
    return line * 12


async def test_a_version_queued_on_one_server_does_not_overwrite_a_later_one_sent_to_another(
    settings: Settings, tmp_path: Path
) -> None:
    url, args = shared_redis(settings, tmp_path)
    keys = Keys(settings.namespace)
    older, newer = note(1), note(2)
    raw = aioredis.Redis.from_url(url)
    first = SpawnedServer("http", tmp_path / "first", *args)
    second = SpawnedServer("http", tmp_path / "second", *args)
    try:
        with anyio.fail_after(300):
            async with Client(first.url) as one, Client(second.url) as two:
                # the first server is sent a backlog, then the older version of "x", acknowledged
                # while its queue is full, and is stopped (SIGSTOP) before its writer gets there
                doc_id = ""
                for attempt in range(3):
                    for i in range(40):
                        result = await one.call_tool("ingest_document", {"text": report(100 * attempt + i)})
                        assert not result.is_error, result.content
                    doc_id = f"x{attempt}"
                    result = await one.call_tool("ingest_document", {"text": older, "id": doc_id})
                    assert result.structured_content is not None
                    assert result.structured_content["status"] == "created"
                    os.kill(first.proc.pid, signal.SIGSTOP)
                    written = await raw.exists(keys.doc(doc_id))
                    if not written and await raw.hexists(keys.ingest_queue(), doc_id):
                        break  # acknowledged, recorded, not written: what this test needs
                    os.kill(first.proc.pid, signal.SIGCONT)  # it was written already: go again
                else:
                    pytest.fail("the first server wrote each queued version before it could be stopped")
                try:
                    # the second server is sent the newer version, later, and writes it (its
                    # change-stream entry is the first new one in x's group: the first server is stopped)
                    changes = keys.changes(group_of(doc_id))
                    last = await raw.xrevrange(changes, count=1)
                    result = await two.call_tool("ingest_document", {"text": newer, "id": doc_id})
                    assert result.structured_content is not None
                    assert result.structured_content["status"] == "created"
                    assert await raw.xread({changes: last[0][0] if last else b"0-0"}, count=1, block=120_000)
                    want = hashlib.sha256(newer.encode()).hexdigest().encode()
                    assert await raw.hget(keys.doc(doc_id), "content_hash") == want
                finally:
                    os.kill(first.proc.pid, signal.SIGCONT)
                # the first server's writer goes on and comes to its older version of x
                listing = await one.call_tool("list_documents", {"limit": 1})  # waits for its queue
                assert not listing.is_error, listing.content
                assert not await raw.hexists(keys.ingest_queue(), doc_id)
                for client in (one, two):
                    got = await client.call_tool("get_document", {"id": doc_id})
                    assert got.structured_content is not None
                    assert got.structured_content["text"] == newer
                    hits = await client.call_tool("search_documents", {"query": newer, "limit": 1})
                    assert hits.structured_content is not None
                    assert hits.structured_content["hits"][0]["doc_id"] == doc_id
                    assert hits.structured_content["hits"][0]["text"] == newer
    finally:
        if first.proc.poll() is None:
            os.kill(first.proc.pid, signal.SIGCONT)
        first.stop()
        second.stop()
        await raw.aclose()
