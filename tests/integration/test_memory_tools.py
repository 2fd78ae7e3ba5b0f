"""The main memory flow on every transport: store, recall, stats, clear."""

from __future__ import annotations

import uuid

import anyio
import pytest

from .conftest import Connect

pytestmark = pytest.mark.anyio


async def test_store_recall_stats_clear(connect: Connect) -> None:
    agent = f"agent-{uuid.uuid4().hex[:8]}"  # the HTTP servers are shared by the session
    with anyio.fail_after(120):
        async with connect() as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            for name in (
                "store_memory",
                "recall_memory",
                "clear_memory",
                "get_memory_stats",
                "consolidate_memory",
            ):
                assert tools[name].output_schema is not None, name

            stored = await client.call_tool(
                "store_memory",
                {
                    "content": "The staging database runs on port 5433",
                    "tier": "long_term",
                    "importance": 0.8,
                    "tags": ["infra"],
                    "agent_id": agent,
                },
            )
            assert stored.is_error is False
            assert stored.structured_content is not None
            memory_id = stored.structured_content["ids"][0]
            other = await client.call_tool(
                "store_memory", {"content": "Lunch is at one o'clock", "tier": "working", "agent_id": agent}
            )
            assert other.is_error is False

            recalled = await client.call_tool(
                "recall_memory", {"query": "which port does the staging database use?", "agent_id": agent}
            )
            assert recalled.is_error is False
            result = recalled.structured_content
            assert result is not None
            top = result["hits"][0]
            assert top["item"]["id"] == memory_id
            assert top["item"]["tier"] == "long_term" and top["item"]["tags"] == ["infra"]
            assert top["item"]["access_count"] == 2
            assert top["why"].startswith("similarity")

            stats = await client.call_tool("get_memory_stats", {"agent_id": agent})
            assert stats.structured_content is not None
            assert stats.structured_content["total_count"] == 2

            refused = await client.call_tool("clear_memory", {"agent_id": agent})
            assert refused.is_error is True
            assert "confirm: true" in refused.content[0].text  # type: ignore[union-attr]
            cleared = await client.call_tool("clear_memory", {"agent_id": agent, "confirm": True})
            assert cleared.structured_content is not None
            assert sum(cleared.structured_content["removed"].values()) == 2
