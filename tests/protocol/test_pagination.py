"""Every ``*/list`` request pages with ``nextCursor``; a client that follows it sees each item once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

pytestmark = pytest.mark.anyio


async def _walk(fetch: Callable[[str | None], Awaitable[Any]], field: str, key: str) -> tuple[list[str], int]:
    names: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        result = await fetch(cursor)
        pages += 1
        names += [str(getattr(item, key)) for item in getattr(result, field)]
        cursor = result.next_cursor
        if cursor is None:
            return names, pages


async def test_lists_page_with_next_cursor(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(create_server(settings)) as whole:
            tools = [t.name for t in (await whole.list_tools()).tools]
            templates = [t.uri_template for t in (await whole.list_resource_templates()).resource_templates]
            prompts = [p.name for p in (await whole.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await whole.list_resources()).resources]
        assert len(tools) > 10

        paged = create_server(settings.model_copy(update={"list_page_size": 2}))
        async with Client(paged, cache=None) as client:
            got_tools, pages = await _walk(lambda c: client.list_tools(cursor=c), "tools", "name")
            assert got_tools == tools
            assert pages == -(-len(tools) // 2)
            got_templates, _ = await _walk(
                lambda c: client.list_resource_templates(cursor=c), "resource_templates", "uri_template"
            )
            assert got_templates == templates
            assert (await _walk(lambda c: client.list_prompts(cursor=c), "prompts", "name"))[0] == prompts
            assert (await _walk(lambda c: client.list_resources(cursor=c), "resources", "uri"))[
                0
            ] == resources


async def test_a_cursor_the_server_did_not_hand_out_is_invalid_params(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(create_server(settings), cache=None) as client:
            for cursor in ("not-a-cursor", "bWNwZzotMQ==", "eHl6OjEw"):  # junk, offset -1, foreign prefix
                with pytest.raises(MCPError) as caught:
                    await client.list_tools(cursor=cursor)
                assert caught.value.error.code == INVALID_PARAMS
                assert "cursor" in caught.value.error.message
