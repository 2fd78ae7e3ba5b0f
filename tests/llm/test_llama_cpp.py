"""The optional llama.cpp backend (gemma.backend='llama_cpp') on the packaged GGUF."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.service import LLMService

pytest.importorskip("llama_cpp", reason="optional extra: pip install 'mcp-gemma[llama]'")

pytestmark = [pytest.mark.model, pytest.mark.anyio]

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def llama_model(models_dir: Path) -> Iterator[object]:
    from mcp_gemma.llm.llama_cpp import LlamaCppModel
    from mcp_gemma.llm.models import ModelStore

    model = LlamaCppModel.load(GemmaSettings(backend="llama_cpp", threads=2), ModelStore(models_dir))
    yield model
    model.close()


def test_greedy_stop_stream_and_cancel(llama_model: object) -> None:
    from mcp_gemma.llm.llama_cpp import LlamaCppModel

    assert isinstance(llama_model, LlamaCppModel)
    assert llama_model.info.decoder == "llama.cpp"
    first = llama_model.generate(PROMPT, max_new_tokens=8)
    assert first == llama_model.generate(PROMPT, max_new_tokens=8).model_copy(
        update={"seconds": first.seconds}
    )
    assert first.tokens_out == 8 and first.finish_reason == "length"
    assert "Paris" in first.text or "France" in first.text
    pieces: list[str] = []
    word = first.text.split()[2]
    stopped = llama_model.generate(PROMPT, max_new_tokens=8, stop=[word], on_text=pieces.append)
    assert stopped.finish_reason == "stop" and word not in stopped.text
    assert "".join(pieces) == stopped.text
    cancel = threading.Event()
    cancelled = llama_model.generate(
        PROMPT, max_new_tokens=100, cancel=cancel, on_text=lambda _p: cancel.set()
    )
    assert cancelled.finish_reason == "cancelled" and cancelled.tokens_out <= 2


async def test_service_uses_the_llama_backend(models_dir: Path, tmp_path: Path) -> None:
    service = LLMService(GemmaSettings(backend="llama_cpp", cache_dir=models_dir), tmp_path)
    with anyio.fail_after(120):
        result = await service.generate(PROMPT, max_new_tokens=4)
    assert result.tokens_out == 4
    info = service.status().info
    assert info is not None and info.decoder == "llama.cpp"
    assert await service.unload() is True
