"""``mcp-gemma doctor``: the report, its JSON form, the exit code, and a failing check's fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcp_gemma import cli

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MCP_GEMMA_") or key in {"REDIS_URL", "HF_TOKEN"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def test_doctor_json_reports_every_check(tmp_path: Path, redis_url: str) -> None:
    result = runner.invoke(
        cli.app, ["doctor", "--json", "--data-dir", str(tmp_path / "d"), "--redis-url", redis_url]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert list(checks) == [
        "python", "rust_core", "data_dir", "redis", "model_gemma", "model_embedding", "model_cache",
        "torch_extra", "http_port", "clients",
    ]  # fmt: skip
    # the default settings need no torch (installed here by [dev], as in CI)
    assert checks["torch_extra"]["status"] == "ok"
    assert checks["torch_extra"]["data"] == {"installed": True, "needed": False}
    assert checks["rust_core"]["data"]["simd_level"]
    assert checks["redis"]["status"] in {"ok", "warn"}
    assert checks["redis"]["data"]["kind"] == "external"
    assert checks["data_dir"]["data"]["free_bytes"] > 0
    assert checks["clients"]["data"]["entries"] == 0


def test_doctor_fails_with_the_fix_when_redis_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:pw-not-shown@127.0.0.1:{port}/0"
    result = runner.invoke(cli.app, ["doctor", "--data-dir", str(tmp_path / "d"), "--redis-url", url])
    assert result.exit_code == 1
    assert "[FAIL] redis: external Redis:" in result.output
    assert "fix: start that Redis, fix REDIS_URL, or unset it" in result.output
    assert "pw-not-shown" not in result.output
    assert "cannot serve" in result.output


def test_doctor_warns_about_a_taken_port_and_a_stale_client_entry(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cursor = tmp_path / "home" / ".cursor" / "mcp.json"
        cursor.parent.mkdir(parents=True)
        cursor.write_text(json.dumps({"mcpServers": {"mcp-gemma": {"command": "/gone/mcp-gemma"}}}), "utf-8")
        env = {"MCP_GEMMA_HTTP__PORT": str(port)}
        result = runner.invoke(cli.app, ["doctor", "--no-redis", "--data-dir", str(tmp_path / "d")], env=env)
    assert result.exit_code == 0, result.output  # warnings do not fail
    assert f"[warn] http_port: 127.0.0.1:{port} is taken" in result.output
    assert "[warn] clients:" in result.output
    assert "fix: mcp-gemma install-client cursor --scope user" in result.output


def test_doctor_runs_as_a_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_") and k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "doctor", "--json", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    redis = next(c for c in report["checks"] if c["name"] == "redis")
    assert redis["data"]["kind"] == "embedded"
    assert redis["data"]["aof"] is True


def test_doctor_names_the_torch_extra_a_gpu_setting_needs(tmp_path: Path) -> None:
    """In a process where torch cannot be imported, a CUDA setting fails the check with its fix."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from mcp_gemma.cli import main\n"
        "sys.argv = ['mcp-gemma', 'doctor', '--json', '--no-redis', '--data-dir', sys.argv[1]]\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_")}
    env["MCP_GEMMA_GEMMA__DEVICE"] = "cuda"
    env["HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1, done.stderr
    assert checks["torch_extra"] == {
        "name": "torch_extra",
        "status": "fail",
        "detail": "torch and transformers not installed; needed by gemma.device='cuda'",
        "fix": "pip install 'mcp-gemma[torch]'",
        "data": {"installed": False, "needed": True},
    }
