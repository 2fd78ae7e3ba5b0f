"""Interop: the official TypeScript SDK (an independent implementation) talks to our server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..integration.conftest import SpawnedServer, server_env

CLIENT_DIR = Path(__file__).resolve().parent / "ts_client"


@pytest.fixture(scope="module")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the interop tests")
        pytest.skip("node/npm not installed")
    if not (CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=CLIENT_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return CLIENT_DIR / "client.mjs"


def run_node(script: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    res = subprocess.run(
        ["node", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_typescript_client_over_stdio(node_client: Path, tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    out = run_node(
        node_client, "stdio", sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio", env=env
    )
    assert out["server"]["name"] == "mcp-gemma"
    assert "health_check" in out["tools"]
    assert out["isError"] is False
    assert out["structuredContent"]["status"] == "ok"


def test_typescript_client_over_streamable_http(node_client: Path, tmp_path: Path) -> None:
    server = SpawnedServer("http", tmp_path / "data")
    try:
        out = run_node(node_client, "http", server.url, env=dict(os.environ, TOOL="health_check"))
        assert out["structuredContent"]["redis"]["ok"] is True
        bad = run_node(
            node_client,
            "http",
            server.url,
            env=dict(os.environ, TOOL="health_check", TOOL_ARGS='{"include_metrics": "maybe"}'),
        )
        assert bad["isError"] is True
        assert "include_metrics" in bad["text"][0]
    finally:
        server.stop()
