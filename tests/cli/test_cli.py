"""The CLI: flags reach the server settings, --version, config show masks secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mcp_gemma import __version__, cli
from mcp_gemma.settings import Settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MCP_GEMMA_") or key in {"REDIS_URL", "HF_TOKEN"}:
            monkeypatch.delenv(key)


def test_version() -> None:
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mcp-gemma {__version__}"


def test_serve_passes_flags_to_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(settings: Settings) -> None:
        seen["settings"] = settings

    monkeypatch.setattr("mcp_gemma.server.run.serve", fake_serve)
    result = runner.invoke(
        cli.app,
        [
            "serve",
            "--transport",
            "http",
            "--port",
            "9999",
            "--path",
            "/x",
            "--data-dir",
            str(tmp_path),
            "--redis-url",
            "redis://localhost:1/0",
        ],
    )
    assert result.exit_code == 0, result.output
    s: Settings = seen["settings"]
    assert (s.transport, s.http.port, s.http.path, s.data_dir) == (
        "streamable-http",
        9999,
        "/x",
        tmp_path.resolve(),
    )
    assert s.redis_url is not None and s.redis_url.get_secret_value() == "redis://localhost:1/0"


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@db:6379/0")
    monkeypatch.setenv("MCP_GEMMA_AUTH_TOKEN", "tok")
    result = runner.invoke(cli.app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["redis_url"] == "redis://:****@db:6379/0"
    assert "hunter2" not in result.output and data["http"]["auth_token"] != "tok"
    human = runner.invoke(cli.app, ["config", "show"]).output.splitlines()
    assert 'redis_url = "redis://:****@db:6379/0"' in human
    assert f"http.auth_token = {json.dumps(data['http']['auth_token'])}" in human
    assert "hunter2" not in "\n".join(human)


def test_real_help_runs_as_a_module() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "--help"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert res.returncode == 0
    assert "serve" in res.stdout and "config" in res.stdout


def test_serve_fast_path_parses_the_serve_options(tmp_path: Path) -> None:
    args = ["serve", "-t", "http", "--port=9999", "--data-dir", str(tmp_path), "--preload", "-c", "x.toml"]
    assert cli.parse_serve(args) == {
        "transport": "http",
        "port": 9999,
        "data_dir": tmp_path,
        "preload": True,
        "config": Path("x.toml"),
    }


@pytest.mark.parametrize(
    "args",
    [["--version"], ["serve", "--help"], ["serve", "--bogus"], ["serve", "--port", "x"], ["serve", "--host"]],
)
def test_anything_else_goes_to_typer(args: list[str]) -> None:
    assert cli.parse_serve(args) is None
