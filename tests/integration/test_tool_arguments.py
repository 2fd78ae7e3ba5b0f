"""Tool arguments are taken as sent or refused: unknown names and booleans for numbers (issue 17)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

from .test_rag_tools import data, error_text, namespace_snapshot

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "search_documents",
            {"query": "plants", "limt": 5},
            "unknown argument(s) 'limt' for search_documents",
        ),
        ("list_documents", {"offset": 0, "zzz": 1, "aaa": 2}, "unknown argument(s) 'aaa', 'zzz'"),
        ("agent_system_info", {"verbose": True}, "it takes: no arguments"),
        ("health_check", {"verbose": True}, "it takes: include_metrics"),
        (
            "search_documents",
            {"query": "plants", "limit": True},
            "'limit' of search_documents must be numbers",
        ),
        ("search_documents", {"query": "plants", "min_score": False}, "'min_score'"),
        ("list_documents", {"offset": True}, "'offset' of list_documents must be numbers"),
        ("ingest_document", {"text": "some text", "metdata": {"a": 1}}, "unknown argument(s) 'metdata'"),
    ],
)
async def test_unknown_and_boolean_arguments_are_refused(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            before = await namespace_snapshot(settings)
            message = error_text(await client.call_tool(tool, args))
            assert expected in message, message
            assert await namespace_snapshot(settings) == before


async def test_schemas_say_no_extra_arguments_and_good_calls_still_work(settings: Settings) -> None:
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            tools = (await client.list_tools()).tools
            assert tools and all(t.input_schema.get("additionalProperties") is False for t in tools)
            data(
                await client.call_tool(
                    "ingest_document", {"id": "flags", "text": "bool metadata", "metadata": {"ok": True}}
                )
            )
            listed = data(await client.call_tool("list_documents", {"limit": 5, "offset": 0}))
            assert [d["metadata"] for d in listed["documents"]] == [{"ok": True}]
            assert data(
                await client.call_tool("search_documents", {"query": "bool", "limit": 2, "min_score": 0})
            )


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "batch_ingest",
            {"documents": [{"content": "no text field"}] * 100},
            "Error executing tool batch_ingest: invalid arguments: "
            "documents.0.text, documents.1.text, documents.2.text and 97 more: Field required; "
            "documents.0.content, documents.1.content, documents.2.content and 97 more: "
            "Extra inputs are not permitted",
        ),
        (
            "search_documents",
            {"query": "plants", "limit": "ten"},
            "Error executing tool search_documents: invalid arguments: "
            "limit: Input should be a valid integer, unable to parse string as an integer (got a string)",
        ),
        (
            "search_documents",
            {"query": 5, "filter": []},
            "Error executing tool search_documents: invalid arguments: "
            "query: Input should be a valid string (got an integer); "
            "filter: Input should be a valid dictionary (got a list)",
        ),
        (
            "search_documents",
            {"query": "plants", "limt": 5},
            "Error executing tool search_documents: invalid arguments: unknown argument(s) 'limt' for "
            "search_documents; it takes: collection, filter, group_by_document, limit, min_score, query",
        ),
    ],
)
async def test_refused_arguments_are_named_briefly(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    """One line per kind of problem, the places that have it, what was sent instead: not pydantic's
    report (the model's name, every input quoted, a docs link per place; ~37 KB for the first case)."""
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            assert error_text(await client.call_tool(tool, args)) == expected


async def test_many_kinds_of_problem_are_capped(settings: Settings) -> None:
    documents: list[dict[str, Any]] = [
        {"text": "a", "metdata": {"lang": "en"}},  # misspelt: refused, not dropped
        {"metadata": {}},
        {"text": 5},
        {"text": "b", "id": ["x"]},
        {"text": "c", "metadata": "lang=en"},
        {"text": True},
        {"text": "d", "metadata": 5},
    ]
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            before = await namespace_snapshot(settings)
            message = error_text(await client.call_tool("batch_ingest", {"documents": documents}))
            assert await namespace_snapshot(settings) == before
    assert message == (
        "Error executing tool batch_ingest: invalid arguments: "
        "documents.0.metdata: Extra inputs are not permitted; "
        "documents.1.text: Field required; "
        "documents.2.text: Input should be a valid string (got an integer); "
        "documents.3.id: Input should be a valid string (got a list); "
        "documents.4.metadata: Input should be a valid dictionary (got a string); "
        "and 2 more problems"
    )
