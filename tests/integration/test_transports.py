"""Transport-specific behaviour: stdout is protocol only, clean shutdown, start-up failures, HTTP auth."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from ..conftest import redis_server_name
from .conftest import SpawnedServer, free_port, server_env, stdio_params

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gemma", *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_stdio_stdout_carries_protocol_only_and_shuts_down_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio", "--log-level", "DEBUG"],
        env=server_env(data),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    requests = [
        INIT,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "health_check", "arguments": {}},
        },
    ]
    proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
    proc.stdin.flush()
    lines: list[str] = []
    while not any('"id":2' in line for line in lines):
        line = proc.stdout.readline()
        assert line, "server closed stdout before answering"
        lines.append(line)
    # Then end of input (communicate closes stdin): the server must exit on its own.
    rest, err = proc.communicate(input="", timeout=60)
    lines += rest.splitlines()
    assert proc.returncode == 0, err
    messages = [json.loads(line) for line in lines if line.strip()]  # every stdout line is JSON-RPC
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[1]["result"]["serverInfo"]["name"] == "mcp-gemma"
    assert by_id[2]["result"]["structuredContent"]["status"] == "ok"
    assert "embedded Redis" in err, "logs go to stderr"
    pidfile = data / "redis" / "valkey.pid"
    assert not pidfile.exists() or not pidfile.read_text().strip(), "embedded Redis stopped on exit"


async def test_stdio_client_against_external_redis(external_redis: str, tmp_path: Path) -> None:
    params = stdio_params(tmp_path / "data", "--redis-url", external_redis)
    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await client.call_tool("health_check", {})
    report = result.structured_content
    assert report is not None
    assert report["redis"]["kind"] == "external"
    assert report["redis"]["version"].startswith(redis_server_name() + " ")
    assert "s3cret-pw" not in json.dumps(report), "password masked"


def test_unreachable_redis_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    port = free_port()
    res = run_cli(
        "serve",
        "--transport",
        "stdio",
        "--redis-url",
        f"redis://127.0.0.1:{port}/0",
        env=server_env(tmp_path / "data", MCP_GEMMA_REDIS_TIMEOUT_S="1"),
    )
    assert res.returncode == 1
    assert f"cannot connect to Redis at redis://127.0.0.1:{port}/0" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_bad_config_file_stops_start_up(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[http]\nport = "eighty"\n', encoding="utf-8")
    res = run_cli("serve", "--config", str(cfg), env=server_env(tmp_path / "data"))
    assert res.returncode == 2
    assert "http.port" in res.stderr and "Traceback" not in res.stderr


def test_unknown_transport_is_refused(tmp_path: Path) -> None:
    res = run_cli("serve", "--transport", "carrier-pigeon", env=server_env(tmp_path / "data"))
    assert res.returncode == 2
    assert "unknown transport" in res.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli("serve", "--transport", "http", "--port", str(port), env=server_env(tmp_path / "data"))
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr


def test_non_loopback_bind_without_token_is_refused(tmp_path: Path) -> None:
    res = run_cli("serve", "--transport", "http", "--host", "0.0.0.0", env=server_env(tmp_path / "data"))
    assert res.returncode == 2
    assert "MCP_GEMMA_AUTH_TOKEN" in res.stderr


async def test_http_bearer_token_is_enforced(tmp_path: Path) -> None:
    server = SpawnedServer(
        "http", tmp_path / "data", env=server_env(tmp_path / "data", MCP_GEMMA_AUTH_TOKEN="tok-123")
    )
    try:
        async with httpx.AsyncClient() as http:
            denied = await http.post(
                server.url, json=INIT, headers={"accept": "application/json, text/event-stream"}
            )
            assert denied.status_code == 401
            wrong = await http.post(server.url, json=INIT, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
        import httpx2

        async with httpx2.AsyncClient(headers={"authorization": "Bearer tok-123"}) as authed:
            from mcp.client.streamable_http import streamable_http_client

            with anyio.fail_after(30):
                async with Client(_Wrapped(streamable_http_client(server.url, http_client=authed))) as client:
                    result = await client.call_tool("health_check", {})
                    assert result.structured_content is not None
                    assert result.structured_content["status"] == "ok"
    finally:
        server.stop()


class _Wrapped:
    def __init__(self, cm: object) -> None:
        self.cm = cm

    async def __aenter__(self) -> object:
        return await self.cm.__aenter__()  # type: ignore[attr-defined]

    async def __aexit__(self, *exc: object) -> object:
        return await self.cm.__aexit__(*exc)  # type: ignore[attr-defined]


def test_http_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = SpawnedServer("http", tmp_path / "data")
    code = server.stop()
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM so the exit status tells why it stopped.
    assert code in (0, -15), server.output()
    assert "Application shutdown complete" in server.output()
    assert "Traceback" not in server.output()
    pidfile = tmp_path / "data" / "redis" / "valkey.pid"
    assert not pidfile.exists() or not pidfile.read_text().strip(), "embedded Redis stopped on exit"
