"""The default install without the ``[torch]`` extra: a process that cannot import torch,
transformers or accelerate converts the shipped GGUF, answers ``reason`` as today, embeds a query,
and says which extra a float or GPU setting needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

# Installed before mcp_gemma is imported: importing any of these fails as if it were not installed.
BLOCKER = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "accelerate", "sentence_transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoTorch())
"""

SCRIPT = """
import json, anyio
from pathlib import Path
from mcp_gemma.errors import ModelUnavailableError
from mcp_gemma.settings import load_settings
from mcp_gemma.llm.factory import build_llm
from mcp_gemma.llm.reason import answer_question
from mcp_gemma.embeddings.config import EmbeddingSettings
from mcp_gemma.embeddings.service import EmbeddingService

data = Path(sys.argv[1])
out = {}

async def refused(**gemma):
    llm = build_llm(load_settings(data_dir=data, gemma={"cache_dir": data / "models", **gemma}))
    try:
        await answer_question(llm, "Hi?", None, [], max_new_tokens=2)
    except ModelUnavailableError as exc:
        return str(exc)
    return "answered"

async def main():
    llm = build_llm(load_settings(data_dir=data, gemma={"cache_dir": data / "models"}))
    result = await answer_question(
        llm, "What is the capital of France?", "Paris is the capital of France.", [], max_new_tokens=8
    )
    info = (await llm.ensure_loaded()).info
    out["reason"] = [result.answer, result.prompt_style, info.dtype, info.from_cache]
    out["float32"] = await refused(dtype="float32")
    out["cuda"] = await refused(device="cuda")
    vector = await EmbeddingService(EmbeddingSettings()).embed_one("where does valkey listen?")
    out["embedding"] = [list(vector.shape), round(float((vector * vector).sum()), 4)]
    try:
        await EmbeddingService(EmbeddingSettings(backend="torch")).embed_one("x")
        out["torch_embedder"] = "embedded"
    except ModelUnavailableError as exc:
        out["torch_embedder"] = str(exc)

anyio.run(main)
out["imported"] = sorted(m for m in ("torch", "transformers", "accelerate") if m in sys.modules)
print(json.dumps(out))
"""


def test_the_default_paths_run_without_torch(tmp_path: Path, packaged_gguf: Path) -> None:
    shipped = tmp_path / "models" / "gguf" / packaged_gguf.name
    shipped.parent.mkdir(parents=True)
    os.link(packaged_gguf, shipped)  # the wheel parts are assembled already; conversion is what runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_")}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["reason"] == ["Paris", "completion", "q8_0", False]  # converted in this process
    assert out["imported"] == []
    extra = "pip install 'mcp-gemma[torch]'"
    assert out["float32"] == (
        "loading 'gemma3-270m-gguf' as float32 on cpu needs torch and transformers, which this install "
        f"does not have (torch); install them with: {extra}"
    )
    assert out["cuda"] == (
        f"gemma.device='cuda' needs torch and transformers, which this install does not have (torch); "
        f"install them with: {extra}"
    )
    assert out["embedding"] == [[384], 1.0]
    assert out["torch_embedder"].endswith(f"install them with: {extra}")
    assert (tmp_path / "models" / "gemma3-270m-gguf" / "model.q8_0.safetensors").is_file()
