"""get_system_metrics, the stats://system resource and the prompts, through a real client."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

from .conftest import Connect

pytestmark = pytest.mark.anyio


async def test_system_metrics_count_tool_calls(connect: Connect) -> None:
    with anyio.fail_after(60):
        async with connect() as client:
            await client.call_tool("health_check", {})
            await client.call_tool("health_check", {"include_metrics": "nope"})
            result = await client.call_tool("get_system_metrics", {})
    assert result.is_error is False
    data = result.structured_content
    assert data is not None
    health = data["tools"]["health_check"]
    assert health["calls"] >= 2
    assert health["errors"] >= 1
    assert health["p99_ms"] >= health["p50_ms"] >= 0
    assert data["process"]["rss_mib"] > 10
    assert data["redis"]["aof_enabled"] in (0, 1)


async def test_stats_resource_and_prompts(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(create_server(settings)) as client:
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
            assert "stats://{section}" in templates
            stats = await client.read_resource("stats://system")
            body = json.loads(stats.contents[0].text)  # type: ignore[union-attr]
            assert body["uptime_s"] >= 0

            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert {"rag_answer", "summarize_document", "react_task"} <= prompts
            answer = await client.get_prompt("rag_answer", {"question": "What is BM25?"})
            assert "hybrid_search" in answer.messages[0].content.text  # type: ignore[union-attr]
            assert "What is BM25?" in answer.messages[0].content.text  # type: ignore[union-attr]

            ingested = await client.call_tool(
                "ingest_document", {"text": "Valkey is a Redis-compatible server.", "id": "prompt-doc"}
            )
            assert ingested.is_error is False, ingested.content
            summary = await client.get_prompt("summarize_document", {"document_id": "prompt-doc"})
            assert "Valkey is a Redis-compatible server." in summary.messages[0].content.text  # type: ignore[union-attr]
