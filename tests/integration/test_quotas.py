"""Quotas through a real client: the most documents a knowledge base holds, and a full Redis.

A full Redis (its maxmemory reached, policy noeviction) refuses the write with a message that names
the setting, and keeps everything stored before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.store.embedded import EmbeddedRedis

pytestmark = pytest.mark.anyio


def text_of(result: object) -> str:
    return " ".join(getattr(block, "text", "") for block in getattr(result, "content", []))


async def test_max_documents_refuses_new_documents_by_name(settings: Settings) -> None:
    limited = settings.model_copy(update={"rag": settings.rag.model_copy(update={"max_documents": 2})})
    with anyio.fail_after(120):
        async with Client(create_server(limited)) as client:
            for i in (1, 2):
                ok = await client.call_tool(
                    "ingest_document", {"text": f"Document number {i}.", "id": f"d{i}"}
                )
                assert not ok.is_error, text_of(ok)
            refused = await client.call_tool("ingest_document", {"text": "A third one.", "id": "d3"})
            assert refused.is_error
            assert text_of(refused) == (
                "Error executing tool ingest_document: the knowledge base holds 2 documents and this ingest "
                "would add 1, past rag.max_documents=2; delete documents or raise rag.max_documents"
            )
            replaced = await client.call_tool("ingest_document", {"text": "Document one, new.", "id": "d1"})
            assert not replaced.is_error, "replacing a document adds none"
            assert replaced.structured_content is not None
            assert replaced.structured_content["status"] == "replaced"
            listed = await client.call_tool("list_documents", {})
            assert listed.structured_content is not None
            assert sorted(d["id"] for d in listed.structured_content["documents"]) == ["d1", "d2"]


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "quota-redis", maxmemory_mb=64, maxmemory_policy="noeviction")
    server.start()
    yield server
    server.release()


async def test_full_redis_refuses_writes_and_keeps_what_it_has(
    small_redis: EmbeddedRedis, tmp_path: Path, namespace: str
) -> None:
    raw = redis.Redis(unix_socket_path=str(small_redis.socket))
    assert raw.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    assert raw.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    settings = load_settings(data_dir=tmp_path / "data", redis_url=small_redis.url, namespace=namespace)
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            kept = await client.call_tool("ingest_document", {"text": "Kept before the cap.", "id": "kept"})
            assert not kept.is_error, text_of(kept)
            raw.config_set("maxmemory", 1)  # far below what is used: every write is refused now
            try:
                refused = await client.call_tool("ingest_document", {"text": "One too many.", "id": "late"})
                memory = await client.call_tool("store_memory", {"content": "a fact"})
            finally:
                raw.config_set("maxmemory", 64 * 1024 * 1024)
            expected = (
                "the Redis server is full (its maxmemory is reached): this write was refused and nothing "
                "stored was dropped; raise embedded_redis.maxmemory_mb (or the external server's maxmemory), "
                "or delete documents / clear memories"
            )
            assert (
                refused.is_error and text_of(refused) == f"Error executing tool ingest_document: {expected}"
            )
            assert memory.is_error and text_of(memory) == f"Error executing tool store_memory: {expected}"
            doc = await client.call_tool("get_document", {"id": "kept"})
            assert doc.structured_content is not None
            assert doc.structured_content["text"] == "Kept before the cap."
    raw.close()
