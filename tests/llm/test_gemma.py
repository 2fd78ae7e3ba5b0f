"""The transformers backend with the real packaged Gemma 3 270M (short generations)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from mcp_gemma.llm.base import ChatMessage
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.convert import MARKER
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.models import PACKAGED_MODEL, ModelStore
from mcp_gemma.llm.q8 import Q8_WEIGHTS

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"


def test_loads_the_packaged_model(gemma: GemmaModel) -> None:
    info = gemma.info
    assert info.model_id == PACKAGED_MODEL
    assert info.device == "cpu"
    assert info.dtype == "q8_0"  # block int8 on the CPU by default
    assert info.prompt_style == "completion"  # the packaged 270M is a base model (no chat template)
    assert info.decoder == "gemma3-int8"  # numpy + Rust int8 products
    assert info.from_cache is False


def test_greedy_is_deterministic_and_sensible(gemma: GemmaModel) -> None:
    first = gemma.generate(PROMPT, max_new_tokens=8)
    second = gemma.generate(PROMPT, max_new_tokens=8)
    assert first.text == second.text
    assert "France" in first.text or "Paris" in first.text
    assert first.tokens_in == 6
    assert first.tokens_out == 8
    assert first.finish_reason == "length"
    assert first.model_id == PACKAGED_MODEL


def test_seeded_sampling_is_reproducible(gemma: GemmaModel) -> None:
    runs = [
        gemma.generate(PROMPT, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7).text for _ in range(2)
    ]
    assert runs[0] == runs[1]


@pytest.mark.usefixtures("gemma")  # the session's cold load has built the cache
def test_fast_decoder_matches_transformers(models_dir: Path) -> None:
    model = GemmaModel.load(GemmaSettings(dtype="float32"), ModelStore(models_dir))
    try:
        prompt = "Once upon a time, there was a little robot who"
        fast = model.generate(prompt, max_new_tokens=16)
        model.use_fast_decoder(False)
        assert model.info.decoder == "transformers"
        reference = model.generate(prompt, max_new_tokens=16)
        assert fast.text == reference.text
    finally:
        model.close()


def test_stop_strings_end_the_text(gemma: GemmaModel) -> None:
    full = gemma.generate(PROMPT, max_new_tokens=16)
    word = full.text.split()[2]
    stopped = gemma.generate(PROMPT, max_new_tokens=16, stop=[word])
    assert stopped.finish_reason == "stop"
    assert word not in stopped.text
    assert full.text.startswith(stopped.text)
    assert stopped.tokens_out < 16


def test_max_new_tokens_is_respected(gemma: GemmaModel) -> None:
    for n in (1, 3):
        result = gemma.generate(PROMPT, max_new_tokens=n)
        assert result.tokens_out == n
        assert result.finish_reason == "length"


def test_streaming_delivers_the_text_in_order(gemma: GemmaModel) -> None:
    pieces: list[str] = []
    result = gemma.generate(PROMPT, max_new_tokens=12, on_text=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == result.text


def test_streaming_never_leaks_a_stop_string(gemma: GemmaModel) -> None:
    full = gemma.generate(PROMPT, max_new_tokens=16).text
    stop = full[len(full) // 2 : len(full) // 2 + 4]
    pieces: list[str] = []
    result = gemma.generate(PROMPT, max_new_tokens=16, stop=[stop], on_text=pieces.append)
    assert "".join(pieces) == result.text
    assert stop not in result.text


def test_cancellation_stops_within_a_token_step(gemma: GemmaModel) -> None:
    cancel = threading.Event()
    seen: list[float] = []

    def on_text(_piece: str) -> None:
        seen.append(time.perf_counter())
        if len(seen) == 2:
            cancel.set()

    result = gemma.generate(PROMPT, max_new_tokens=200, cancel=cancel, on_text=on_text)
    assert result.finish_reason == "cancelled"
    assert result.tokens_out <= 3
    assert len(seen) == 2
    after = gemma.generate(PROMPT, max_new_tokens=4)  # still usable
    assert after.finish_reason == "length"


def test_time_budget_ends_generation(gemma: GemmaModel) -> None:
    result = gemma.generate(PROMPT, max_new_tokens=500, timeout_s=0.05)
    assert result.finish_reason == "timeout"
    assert result.tokens_out < 500


def test_messages_render_as_a_completion_prompt_for_base_models(gemma: GemmaModel) -> None:
    messages = [ChatMessage(role="system", content="Answer briefly."), ChatMessage(role="user", content="Hi")]
    result = gemma.generate(messages, max_new_tokens=4)
    assert result.tokens_in == gemma.count_tokens(messages) > 5


def test_second_load_uses_the_safetensors_cache(
    models_dir: Path, cold_load: tuple[GemmaModel, float]
) -> None:
    cache = models_dir / PACKAGED_MODEL
    assert (cache / "model.safetensors").is_file()
    assert (cache / MARKER).is_file()
    assert (cache / Q8_WEIGHTS).is_file()
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.is_file()}
    warm = GemmaModel.load(GemmaSettings(), ModelStore(models_dir))
    try:
        assert warm.info.from_cache is True
        # Nothing converted again: the cache files are the ones the cold load wrote.
        assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.is_file()} == written
        assert (
            warm.generate(PROMPT, max_new_tokens=4).text
            == cold_load[0].generate(PROMPT, max_new_tokens=4).text
        )
    finally:
        warm.close()


def test_corrupt_cache_is_rebuilt(tmp_path: Path, models_dir: Path, packaged_gguf: Path) -> None:
    store = ModelStore(tmp_path)
    resolved = store.resolve(PACKAGED_MODEL)
    # Seed the new store from the session's files, then damage the cached weights.
    store.packaged_gguf_path().parent.mkdir(parents=True)
    shutil.copyfile(packaged_gguf, store.packaged_gguf_path())
    shutil.copytree(models_dir / PACKAGED_MODEL, resolved.checkpoint)
    (resolved.checkpoint / "model.safetensors").write_bytes(b"\x00" * 100)
    notes: list[str] = []
    assert store.ensure_checkpoint(resolved, progress=notes.append) is False
    assert any("rebuilding" in n for n in notes)
    assert (resolved.checkpoint / "model.safetensors").stat().st_size > 500_000_000
