"""One real Gemma 270M for the whole session: converted from the packaged GGUF once, loaded once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.models import ModelStore


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory private to this test session (the conversion cache lives here)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def cold_load(models_dir: Path) -> tuple[GemmaModel, float]:
    """The packaged model loaded with an empty cache (assemble + convert + load), and how long it took."""
    started = time.perf_counter()
    model = GemmaModel.load(GemmaSettings(), ModelStore(models_dir))
    return model, time.perf_counter() - started


@pytest.fixture(scope="session")
def gemma(cold_load: tuple[GemmaModel, float]) -> GemmaModel:
    """The loaded default model (block int8 on CPU, numpy + Rust decoder)."""
    return cold_load[0]


@pytest.fixture(scope="session")
def packaged_gguf(models_dir: Path) -> Path:
    """The packaged GGUF, assembled once into the session's models directory."""
    return ModelStore(models_dir).assemble_packaged()
