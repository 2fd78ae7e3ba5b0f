"""Helpers for the memory tests: settings with small tiers, and tool calls that must succeed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

MakeSettings = Callable[..., Settings]
OpenClient = Callable[[Settings], AbstractAsyncContextManager[Client]]


@pytest.fixture
def make_settings(tmp_path: Path, redis_url: str, namespace: str) -> MakeSettings:
    """Settings on the shared Redis and this test's namespace, with ``memory`` overrides."""

    def build(gemma: dict[str, Any] | None = None, **memory: Any) -> Settings:
        return load_settings(
            data_dir=tmp_path / "data", redis_url=redis_url, namespace=namespace, memory=memory, gemma=gemma
        )

    return build


@pytest.fixture
def open_client() -> OpenClient:
    """An in-memory MCP client on a fresh server (a new process state each time)."""

    @asynccontextmanager
    async def connect(settings: Settings) -> AsyncIterator[Client]:
        async with Client(create_server(settings), raise_exceptions=True) as client:
            yield client

    return connect


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(tool, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert result.is_error is False, text
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, **args: Any) -> str:
    """Call a tool that must fail; its error message."""
    result = await client.call_tool(tool, args)
    assert result.is_error is True, result.structured_content
    return str(result.content[0].text)  # type: ignore[union-attr]


async def contents(client: Client, query: str, **args: Any) -> list[str]:
    """The contents recalled for ``query``, best first."""
    res = await ok(client, "recall_memory", query=query, **args)
    return [h["item"]["content"] for h in res["hits"]]


def tier_stats(stats: dict[str, Any], tier: str) -> dict[str, Any]:
    """One tier's entry of a get_memory_stats result."""
    return next(t for t in stats["tiers"] if t["tier"] == tier)
