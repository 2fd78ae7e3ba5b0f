"""The server answers a real client on every transport: initialize, list tools, health_check."""

from __future__ import annotations

import anyio
import pytest

from mcp_gemma import __version__

from .conftest import Connect

pytestmark = pytest.mark.anyio


async def test_initialize_lists_tools_and_health_check(connect: Connect) -> None:
    with anyio.fail_after(60):
        async with connect() as client:
            info = client.server_info
            assert info is not None
            assert info.name == "mcp-gemma"
            assert info.version == __version__
            assert client.instructions and "health_check" in client.instructions

            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert "health_check" in tools
            assert tools["health_check"].output_schema is not None

            result = await client.call_tool("health_check", {})
            assert result.is_error is False
            report = result.structured_content
            assert report is not None
            assert report["status"] == "ok"
            assert report["redis"]["ok"] is True
            assert report["redis"]["latency_ms"] >= 0
            assert report["redis"]["version"].split()[0] in {"valkey", "redis"}
            assert report["version"] == __version__
            assert report["versions"]["rust_core"] == __version__
            assert report["data_dir"]


async def test_unknown_tool_is_a_clear_error(connect: Connect) -> None:
    with anyio.fail_after(60):
        async with connect() as client:
            result = await client.call_tool("no_such_tool", {})
            assert result.is_error is True
            assert "Unknown tool: no_such_tool" in result.content[0].text  # type: ignore[union-attr]


async def test_health_check_metrics_and_argument_types(connect: Connect) -> None:
    with anyio.fail_after(60):
        async with connect() as client:
            result = await client.call_tool("health_check", {"include_metrics": True})
            assert result.is_error is False
            metrics = result.structured_content["metrics"]  # type: ignore[index]
            assert metrics["rss_mib"] > 10 and metrics["threads"] >= 1

            bad = await client.call_tool("health_check", {"include_metrics": {"not": "a bool"}})
            assert bad.is_error is True
            assert "include_metrics" in bad.content[0].text  # type: ignore[union-attr]
