"""One-document ingests answered through a real HTTP server that is then killed (SIGKILL) with its
write-behind queue still being written: a fresh server over the same Redis writes what was
acknowledged, and a client finds every document."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from mcp import Client

from mcp_gemma.settings import Settings
from mcp_gemma.store.keys import Keys

from .conftest import SpawnedServer, _write_ns_config

pytestmark = pytest.mark.anyio

PLACES = ["harbour", "glacier", "desert", "forest", "volcano", "reef", "valley", "marsh"]


def note(i: int) -> str:
    place = PLACES[i % len(PLACES)]
    return f"Field note {i}: the {place} was surveyed on day {i} and the {place} survey found {i * 7} birds."


async def test_ingests_acknowledged_before_a_kill_are_written_by_the_next_server(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    args = ("--redis-url", url, "--config", str(_write_ns_config(tmp_path, settings)))
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
