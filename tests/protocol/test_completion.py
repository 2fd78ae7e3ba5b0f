"""``completion/complete`` through a real client: every argument with a domain, and the refusals."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

pytestmark = pytest.mark.anyio

TIERS = ["working", "short_term", "long_term", "episodic", "semantic"]


async def _values(
    client: Client,
    ref: PromptReference | ResourceTemplateReference,
    name: str,
    value: str,
    context: dict[str, str] | None = None,
) -> list[str]:
    result = await client.complete(ref, {"name": name, "value": value}, context)
    return result.completion.values


async def test_completion_suggests_every_argument_with_a_domain(settings: Settings) -> None:
    with anyio.fail_after(120):
        async with Client(create_server(settings), raise_exceptions=True) as client:
            assert client.server_capabilities.completions is not None
            for doc_id in ("guide/install", "guide/usage", "notes"):
                ingested = await client.call_tool(
                    "ingest_document", {"text": f"Text of {doc_id}.", "id": doc_id}
                )
                assert ingested.is_error is False
            stored = await client.call_tool(
                "store_memory", {"content": "Port 5433", "tier": "long_term", "agent_id": "planner"}
            )
            assert stored.structured_content is not None
            memory_id = stored.structured_content["ids"][0]

            doc = ResourceTemplateReference(uri="doc://{id}{?collection}")
            assert await _values(client, doc, "id", "guide/") == ["guide/install", "guide/usage"]
            assert await _values(client, doc, "id", "") == ["guide/install", "guide/usage", "notes"]
            summarize = PromptReference(name="summarize_document")
            assert await _values(client, summarize, "document_id", "no") == ["notes"]

            tier = ResourceTemplateReference(uri="memory://{tier}{?agent_id}")
            assert await _values(client, tier, "tier", "") == TIERS
            assert await _values(client, tier, "tier", "s") == ["short_term", "semantic"]
            assert await _values(client, tier, "agent_id", "pl") == ["planner"]
            assert "default" in await _values(client, tier, "agent_id", "")

            item = ResourceTemplateReference(uri="memory://{tier}/{id}{?agent_id}")
            context = {"tier": "long_term", "agent_id": "planner"}
            assert await _values(client, item, "id", "", context) == [memory_id]
            assert await _values(client, item, "id", "", {"tier": "working", "agent_id": "planner"}) == []
            assert await _values(client, item, "id", "") == []  # no tier yet: nothing to list

            tools = await _values(client, PromptReference(name="react_task"), "tool", "ingest")
            assert tools == ["ingest_document"]
            assert await _values(client, PromptReference(name="react_task"), "task", "a") == []
            assert await _values(
                client, ResourceTemplateReference(uri="stats://{section}"), "section", ""
            ) == ["system"]

            prompt = await client.get_prompt("react_task", {"task": "Find the port", "tool": "recall_memory"})
            assert "Start with the recall_memory tool." in str(prompt.messages[0].content)


async def test_completion_refuses_an_unknown_prompt_or_template(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(create_server(settings)) as client:
            for ref in (PromptReference(name="nope"), ResourceTemplateReference(uri="nope://{x}")):
                with pytest.raises(MCPError) as caught:
                    await client.complete(ref, {"name": "x", "value": ""})
                assert caught.value.error.code == INVALID_PARAMS
                assert "nope" in caught.value.error.message
