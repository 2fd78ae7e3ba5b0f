"""A served process restarted over the same Redis and data dir: it saves its index (with the HNSW
graph) on a clean exit and, started again, serves from the snapshot exactly what it served before,
with no graph build; real stdio server processes, real MiniLM, a standalone Redis."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from .conftest import stdio_params

pytestmark = pytest.mark.anyio

DOCS = {
    "tides": "Tides are caused by the gravitational pull of the moon on the oceans of the earth.",
    "ice": "Glaciers are slow rivers of ice that carve valleys over thousands of years.",
    "bread": "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
    "coral": "Coral reefs are built by tiny animals that live in warm, shallow and clear sea water.",
}
QUERIES = ["moon and ocean tides", "yeast", "warm sea water"]


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def knowledge_base(client: Client) -> dict[str, Any]:
    report = await call(client, "health_check")
    (kb,) = [c for c in report["components"] if c["name"] == "knowledge base"]
    detail: dict[str, Any] = kb["detail"]
    return detail


async def answers(client: Client) -> list[object]:
    """Ranked hits, BM25 scores and fused scores of keyword-weighted hybrid searches exactly, and the
    cosines to 5 decimals: each process embeds the query anew, and MiniLM can differ in the last bits
    from one load to the next (the BLAS threads at the time), so cosines may move by an ulp."""
    out: list[object] = []
    for q in QUERIES:
        for tool, args in (("hybrid_search", {"keyword_weight": 1.0}), ("search_documents", {})):
            result = await call(client, tool, query=q, limit=4, **args)
            assert result.pop("took_ms") >= 0
            for hit in result["hits"]:
                hit["vector_score"] = round(hit["vector_score"], 5)
                if tool == "search_documents":
                    hit["score"] = round(hit["score"], 5)
            out.append(result)
    return out


async def test_a_restarted_server_answers_from_its_snapshot_as_before(
    external_redis: str, tmp_path: Path
) -> None:
    params = stdio_params(
        tmp_path / "data",
        "--redis-url",
        external_redis,
        MCP_GEMMA_NAMESPACE=f"t{secrets.token_hex(6)}",
        MCP_GEMMA_RAG__ANN="true",
    )
    with anyio.fail_after(240):
        async with Client(params) as client:
            for doc_id, text in DOCS.items():
                await call(client, "ingest_document", text=text, id=doc_id)
            # the graph is built in a background thread of the server; each call syncs the index and
            # installs it once done (polled across the process boundary, no timing asserted)
            while (await knowledge_base(client))["ann"] != "ready":
                await anyio.sleep(0.2)
                await call(client, "list_documents")
            before = await answers(client)
            assert (await knowledge_base(client))["built_from"] == "redis"
    assert (tmp_path / "data" / "index").is_dir()

    with anyio.fail_after(240):
        async with Client(params) as client:
            await call(client, "list_documents")
            kb = await knowledge_base(client)
            assert (kb["built_from"], kb["ann"], kb["chunks"]) == ("snapshot", "ready", 4)
            assert await answers(client) == before
