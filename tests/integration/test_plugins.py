"""Server plugins (``server.plugins``): a small real plugin's tools, prompt and completion through real
client sessions (in-process, stdio, Streamable HTTP with principals), and plugins that cannot load."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import LoggingMessageNotificationParams, PromptReference
from pydantic import ValidationError

from mcp_gemma.errors import ConfigError
from mcp_gemma.server.app import create_server
from mcp_gemma.server.plugins import PluginError, load_plugins
from mcp_gemma.settings import ServerSettings, Settings

from .conftest import BearerTransport, SpawnedServer, server_env, stdio_params
from .test_transports import INIT

pytestmark = pytest.mark.anyio

NOTES = "tests.plugins.notes"
WRITER = "writer-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"


def with_plugins(settings: Settings, *names: str) -> Settings:
    return settings.model_copy(update={"server": ServerSettings(plugins=list(names))})


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def audit_records(data_dir: Path) -> list[tuple[str, str, str, list[str], str]]:
    lines = (data_dir / "audit.log").read_text(encoding="utf-8").splitlines()
    return [
        (r["principal"], r["transport"], r["action"], r["ids"], r["result"]) for r in map(json.loads, lines)
    ]


async def test_a_plugins_tools_prompt_and_completion_in_process(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(create_server(with_plugins(settings, NOTES))) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            added = await client.call_tool("notes_add", {"text": "buy milk"})
            counted = await client.call_tool("notes_count", {})
            misspelt = await client.call_tool("notes_add", {"txt": "x"})
            completion = await client.complete(
                PromptReference(type="ref/prompt", name="notes_greeting"), {"name": "language", "value": "e"}
            )
            prompt = await client.get_prompt("notes_greeting", {"language": "french"})
    assert {"notes_add", "notes_count", "health_check"} <= set(tools)
    assert tools["notes_add"].input_schema["additionalProperties"] is False  # our argument checks apply
    assert added.structured_content == {"count": 1, "newest": "buy milk"}
    assert counted.structured_content == {"count": 1, "newest": "buy milk"}
    assert misspelt.is_error
    assert "unknown argument(s) 'txt' for notes_add; it takes: text" in text_of(misspelt)
    assert completion.completion.values == ["english", "esperanto"]
    assert [m.content.text for m in prompt.messages if m.content.type == "text"] == ["Say hello in french."]
    # notes_add declares nothing, so it changes data: audited; notes_count is read-only: not audited.
    assert audit_records(settings.data_dir) == [
        ("local", "stdio", "notes_add", [], "ok"),
        ("local", "stdio", "notes_add", [], "error:ValidationError"),
    ]


async def test_a_plugin_over_stdio(settings: Settings, tmp_path: Path) -> None:
    ns = tmp_path / "ns.toml"
    ns.write_text(f'namespace = "{settings.namespace}"\n', encoding="utf-8")
    assert settings.redis_url is not None
    params = stdio_params(
        tmp_path / "data",
        "--redis-url",
        settings.redis_url.get_secret_value(),
        "--config",
        str(ns),
        MCP_GEMMA_SERVER__PLUGINS=json.dumps([NOTES]),
    )
    with anyio.fail_after(90):
        async with Client(params) as client:
            first = await client.call_tool("notes_add", {"text": "over stdio"})
            second = await client.call_tool("notes_add", {"text": "again"})
    assert first.structured_content == {"count": 1, "newest": "over stdio"}
    assert second.structured_content == {"count": 2, "newest": "again"}


@pytest.fixture(scope="module")
def http_with_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    base = tmp_path_factory.mktemp("plugin-http")
    tokens = base / "tokens.toml"
    tokens.write_text(
        f'[[principals]]\nname = "writer"\ntoken = "{WRITER}"\naccess = "write"\n\n'
        f'[[principals]]\nname = "reader"\ntoken = "{READER}"\naccess = "read"\n',
        encoding="utf-8",
    )
    tokens.chmod(0o600)
    data = base / "data"
    env = server_env(
        data, MCP_GEMMA_HTTP__TOKENS_FILE=str(tokens), MCP_GEMMA_SERVER__PLUGINS=json.dumps([NOTES])
    )
    server = SpawnedServer("http", data, env=env)
    yield server
    server.stop()


async def test_plugin_tools_follow_the_principals_rights_over_http(http_with_plugin: SpawnedServer) -> None:
    with anyio.fail_after(90):
        async with Client(BearerTransport(http_with_plugin.url, READER)) as reader:
            refused = await reader.call_tool("notes_add", {"text": "from the reader"})
            counted = await reader.call_tool("notes_count", {})
        async with Client(BearerTransport(http_with_plugin.url, WRITER)) as writer:
            added = await writer.call_tool("notes_add", {"text": "from the writer"})
    assert refused.is_error
    assert text_of(refused) == (
        "principal 'reader' has read-only access: notes_add changes data; use a token whose access is 'write'"
    )
    assert counted.structured_content == {"count": 0, "newest": None}
    assert added.structured_content == {"count": 1, "newest": "from the writer"}
    assert audit_records(http_with_plugin.log.parent / "data") == [
        ("reader", "streamable-http", "notes_add", [], "error:AccessDeniedError"),
        ("writer", "streamable-http", "notes_add", [], "ok"),
    ]


def test_load_plugins_names_what_is_wrong() -> None:
    with pytest.raises(ConfigError) as missing:
        load_plugins(["tests.plugins.absent"])
    assert str(missing.value) == (
        "server.plugins: cannot import 'tests.plugins.absent' (No module named 'tests.plugins.absent'); "
        "install it or put its folder on PYTHONPATH"
    )
    with pytest.raises(ConfigError) as bare:
        load_plugins(["tests.plugins.no_register"])
    assert str(bare.value) == (
        "server.plugins: module 'tests.plugins.no_register' has no register(server, settings) function"
    )
    with pytest.raises(ValidationError) as bad_name:
        ServerSettings.model_validate({"plugins": ["not a module"]})
    assert [(e["loc"], e["type"]) for e in bad_name.value.errors()] == [
        (("plugins", 0), "string_pattern_mismatch")
    ]


def test_serve_stops_before_answering_when_a_plugin_cannot_be_imported(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio"],
        env=server_env(tmp_path / "data", MCP_GEMMA_SERVER__PLUGINS='["tests.plugins.absent"]'),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.strip().splitlines()[-1] == (
        "mcp-gemma: error: server.plugins: cannot import 'tests.plugins.absent' (No module named "
        "'tests.plugins.absent'); install it or put its folder on PYTHONPATH"
    )


def test_a_failing_register_stops_an_http_server(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "http", "--port", "0"],
        env=server_env(tmp_path / "data", MCP_GEMMA_SERVER__PLUGINS='["tests.plugins.broken"]'),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "mcp-gemma: error: server plugin 'tests.plugins.broken' failed to register: "
        "RuntimeError: licence file /nonexistent/licence.key not found"
    )


def test_a_failing_register_on_stdio_is_every_requests_error_and_the_exit_status(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gemma", "serve"],
        env=server_env(tmp_path / "data", MCP_GEMMA_SERVER__PLUGINS='["tests.plugins.broken"]'),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    messages = [INIT, {"jsonrpc": "2.0", "method": "notifications/initialized"}, listing]
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    lines = [proc.stdout.readline(), proc.stdout.readline()]  # answers to 1 and 2; then end of input
    out, err = proc.communicate("", timeout=60)
    by_id = {m["id"]: m for m in map(json.loads, [*lines, *out.splitlines()]) if "id" in m}
    reason = (
        "the server could not register its tools: server plugin 'tests.plugins.broken' failed to register: "
        "RuntimeError: licence file /nonexistent/licence.key not found"
    )
    assert by_id[1]["result"]["serverInfo"]["name"] == "mcp-gemma"
    assert by_id[2]["error"]["message"] == reason
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"mcp-gemma: error: {reason}"


async def test_a_failing_register_is_a_clear_error_for_a_client(settings: Settings) -> None:
    with anyio.fail_after(60):
        async with Client(
            create_server(with_plugins(settings, "tests.plugins.broken"), defer_registration=True)
        ) as c:
            with pytest.raises(MCPError) as listed:
                await c.list_tools()
    assert "server plugin 'tests.plugins.broken' failed to register" in str(listed.value)


async def test_a_plugins_log_records_reach_the_client_that_asked(settings: Settings) -> None:
    logs: list[str] = []
    arrived = anyio.Event()

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(f"{params.level} {params.logger}: {params.data}")
        if params.logger == NOTES:
            arrived.set()

    with anyio.fail_after(60):
        server = create_server(with_plugins(settings, NOTES))
        async with Client(server, mode="legacy", logging_callback=on_log) as client:
            with warnings.catch_warnings():  # logging/setLevel is deprecated in the 2026 protocol
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.set_logging_level("info")
            await client.call_tool("notes_add", {"text": "logged"})
            await arrived.wait()
    assert [item for item in logs if NOTES in item] == [f"info {NOTES}: note 1 kept"]


async def test_a_plugin_tool_may_not_take_a_name_the_server_has(settings: Settings) -> None:
    with pytest.raises(PluginError) as clash:
        create_server(with_plugins(settings, "tests.plugins.clash"))
    assert str(clash.value) == (
        "server plugin 'tests.plugins.clash' registers tool(s) this server already has: health_check; "
        "give them other names"
    )
