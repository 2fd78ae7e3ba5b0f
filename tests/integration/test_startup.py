"""Start-up order (issue 7): ``initialize`` is answered before the state opens; what needs the state
waits for it, and a state that cannot open becomes a clear error for each request that needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

from .conftest import free_port, server_env
from .test_transports import INIT

pytestmark = pytest.mark.anyio


async def test_unreachable_redis_is_a_tool_error_after_a_normal_handshake(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(
        data_dir=tmp_path / "d", redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=1
    )
    with anyio.fail_after(60):
        async with Client(create_server(settings, defer_registration=True)) as client:
            tools = await client.list_tools()
            assert "search_documents" in {t.name for t in tools.tools}, "listing needs no Redis"
            result = await client.call_tool("health_check", {})
            assert result.is_error is True
            text = result.content[0].text  # type: ignore[union-attr]
            assert f"cannot connect to Redis at redis://127.0.0.1:{port}/0" in text
            assert "Traceback" not in text
            with pytest.raises(MCPError, match="cannot connect to Redis"):
                await client.read_resource("stats://system")


async def test_deferred_registration_serves_the_same_tools(settings: Settings) -> None:
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as eager:
            eager_tools = sorted(t.name for t in (await eager.list_tools()).tools)
        async with Client(create_server(settings, defer_registration=True)) as deferred:
            deferred_tools = sorted(t.name for t in (await deferred.list_tools()).tools)
            health = await deferred.call_tool("health_check", {})
    assert deferred_tools == eager_tools
    assert health.is_error is False
    assert health.structured_content is not None and health.structured_content["status"] == "ok"


def test_serve_path_imports_no_heavy_package_before_serving() -> None:
    code = (
        "import sys, mcp_gemma.cli, mcp_gemma.settings, mcp_gemma.server.run, mcp_gemma.server.app;"
        "print([m for m in ('typer', 'rich', 'redis', 'numpy', 'mcp_gemma.rag.service') if m in sys.modules])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]", res.stdout


# Service modules (and what they import) that listing the tools must not wait for: a tool imports
# them in its body, on its first call.
SERVICES = (
    "numpy",
    "redis",
    "mcp_gemma.embeddings.service",
    "mcp_gemma.memory.repository",
    "mcp_gemma.rag.collections",
    "mcp_gemma.rag.service",
    "mcp_gemma.store.redis",
)
# Every optional tool on, so that the checks below cover all of them.
ALL_TOOLS_ENV = {
    "MCP_GEMMA_AGENT__ENABLE_WRITE_FILE": "true",
    "MCP_GEMMA_AGENT__FETCH_ALLOWED_HOSTS": '["example.org"]',
    "MCP_GEMMA_AGENT__SEARCH_ENDPOINT": "http://127.0.0.1:9/search",
    "MCP_GEMMA_AGENT__BRAIN": "auto",
}


def test_registering_the_tools_imports_no_service(tmp_path: Path) -> None:
    """``tools/list`` waits for the registration only; the services load after it (issue 18)."""
    code = (
        "import sys; from mcp_gemma.settings import load_settings;"
        "from mcp_gemma.server.app import create_server;"
        "server = create_server(load_settings(), defer_registration=True);"
        "import mcp_gemma.server.app as app; app.register_all(server, load_settings());"
        f"print([m for m in {SERVICES!r} if m in sys.modules])"
    )
    env = server_env(tmp_path / "data", MCP_GEMMA_ALLOWED_ROOTS=json.dumps([str(tmp_path)]), **ALL_TOOLS_ENV)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert res.stdout.strip() == "[]", res.stdout


def _tools_list_line(tmp_path: Path, name: str, preamble: str) -> str:
    """The raw ``tools/list`` answer of a stdio server run after ``preamble``."""
    code = (
        f"{preamble}; import sys; sys.argv = ['mcp-gemma', 'serve']; from mcp_gemma.cli import main; main()"
    )
    env = server_env(tmp_path / name, MCP_GEMMA_ALLOWED_ROOTS=json.dumps([str(tmp_path)]), **ALL_TOOLS_ENV)
    messages = [
        INIT,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    # Keep stdin open until the list is answered: at end of input the session ends.
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    _, err = proc.communicate("", timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(lines[0])["id"] == 1 and json.loads(lines[1])["id"] == 2, lines
    return lines[1]


def test_stdio_tool_list_is_the_same_with_the_services_imported_first(tmp_path: Path) -> None:
    """The tool declarations import the services lazily; the list a client reads (names, descriptions,
    schemas, annotations) is byte for byte the one a server with every service imported sends."""
    lazy = _tools_list_line(tmp_path, "lazy", "pass")
    eager = _tools_list_line(
        tmp_path,
        "eager",
        "import mcp_gemma.agent.brain, mcp_gemma.agent.react, mcp_gemma.memory.consolidation, "
        "mcp_gemma.rag.collections, mcp_gemma.rag.research, mcp_gemma.rag.sync, mcp_gemma.server.sampling, "
        "mcp_gemma.state; mcp_gemma.state.import_services()",
    )
    assert lazy == eager
    names = [tool["name"] for tool in json.loads(lazy)["result"]["tools"]]
    assert names == [
        "health_check",
        "get_system_metrics",
        "store_memory",
        "recall_memory",
        "clear_memory",
        "get_memory_stats",
        "consolidate_memory",
        "ingest_document",
        "batch_ingest",
        "search_documents",
        "semantic_search",
        "hybrid_search",
        "research_query",
        "list_documents",
        "get_document",
        "delete_document",
        "sync_folder",
        "reason",
        "agent_calculator",
        "agent_get_datetime",
        "agent_system_info",
        "agent_read_file",
        "agent_list_directory",
        "agent_write_file",
        "agent_fetch_url",
        "agent_web_search",
        "run_agent",
    ]


def test_initialize_is_answered_while_the_state_cannot_open(tmp_path: Path) -> None:
    """Over stdio a client gets its handshake and a clear tool error; the exit status is still 1."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gemma", "serve", "--redis-url", f"redis://127.0.0.1:{port}/0"],
        env=server_env(tmp_path / "data", MCP_GEMMA_REDIS_TIMEOUT_S="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "store_memory", "arguments": {"content": "x"}},
    }
    messages = [INIT, {"jsonrpc": "2.0", "method": "notifications/initialized"}, call]
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    lines = [proc.stdout.readline(), proc.stdout.readline()]  # answers to 1 and 2; then end of input
    out, err = proc.communicate("", timeout=60)
    by_id = {m["id"]: m for m in map(json.loads, [*lines, *out.splitlines()]) if "id" in m}
    assert by_id[1]["result"]["serverInfo"]["name"] == "mcp-gemma"
    assert by_id[2]["result"]["isError"] is True
    assert "cannot connect to Redis" in by_id[2]["result"]["content"][0]["text"]
    assert proc.returncode == 1
    assert "Traceback" not in err and "cannot connect to Redis" in err


def test_a_first_request_without_initialize_still_gets_the_tools(tmp_path: Path) -> None:
    """The deferred registration starts after the first answer or at the first request that needs
    the tools: a 2026-07-28 client that never sends ``initialize`` lists and calls them; the strict
    argument model, built on a tool's first call, refuses an unknown argument."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
    }
    calls = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "agent_calculator",
                "arguments": {"expression": "6*7", "limt": 1},
                "_meta": meta,
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "agent_calculator", "arguments": {"expression": "6*7"}, "_meta": meta},
        },
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gemma", "serve"],
        env=server_env(tmp_path / "data"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None
    answers = []
    for call in calls:  # one at a time: the session ends at end of input
        proc.stdin.write(json.dumps(call) + "\n")
        proc.stdin.flush()
        answers.append(json.loads(proc.stdout.readline()))
    _, err = proc.communicate("", timeout=60)
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert "agent_calculator" in {t["name"] for t in answers[0]["result"]["tools"]}
    refused = answers[1]["result"]
    assert refused["isError"] is True
    assert (
        "unknown argument(s) 'limt' for agent_calculator; it takes: expression"
        in refused["content"][0]["text"]
    )
    assert answers[2]["result"]["structuredContent"] == {"expression": "6*7", "result": 42}
    assert proc.returncode == 0, err
