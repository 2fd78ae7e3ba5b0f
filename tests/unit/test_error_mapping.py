"""Domain errors are plain exceptions; the MCP server maps them to tool errors in one place.

A ``McpGemmaError`` raised by a tool reaches the client as ``isError: true`` with its message; any
other exception reaches it without its text.
"""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_gemma.errors import McpGemmaError, NotFoundError
from mcp_gemma.server.app import GemmaServer

pytestmark = pytest.mark.anyio


def server() -> GemmaServer:
    app = GemmaServer("errors")

    @app.tool()
    async def missing() -> str:
        raise NotFoundError("no document 'x': list_documents shows what there is")

    @app.tool()
    async def crash() -> str:
        raise RuntimeError("secret internals")

    @app.tool()
    async def fine() -> str:
        return "ok"

    return app


def test_domain_errors_do_not_depend_on_the_sdk() -> None:
    assert McpGemmaError.__mro__[1:] == (Exception, BaseException, object)


async def test_a_domain_error_reaches_the_client_with_its_message() -> None:
    async with Client(server()) as client:
        result = await client.call_tool("missing", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == "Error executing tool missing: no document 'x': list_documents shows what there is"


async def test_any_other_exception_reaches_the_client_without_its_text() -> None:
    async with Client(server()) as client:
        result = await client.call_tool("crash", {})
        ok = await client.call_tool("fine", {})
    assert result.is_error
    assert "secret" not in result.content[0].text  # type: ignore[union-attr]
    assert not ok.is_error
