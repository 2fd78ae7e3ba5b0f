"""The default int8 path on the real Gemma 3 270M: agreement with float32, masks, cache, no torch."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mcp_gemma.errors import AccessDeniedError, InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.device import resolve_dtype
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.models import PACKAGED_MODEL, ModelStore
from mcp_gemma.llm.q8 import Q8_WEIGHTS, Q8Decoder, Q8Weights, read_config
from mcp_gemma.llm.tokenizer import CheckpointTokenizer
from tests.native.test_q8 import thread_names

pytestmark = pytest.mark.model

TEXT = "Once upon a time, there was a little robot who lived in a quiet village by the sea."


def _q8(gemma: GemmaModel) -> Q8Weights:
    weights = gemma._q8
    assert weights is not None
    return weights


@pytest.mark.usefixtures("gemma")
def test_int8_agrees_with_float32_token_by_token(gemma: GemmaModel, models_dir: Path) -> None:
    import torch

    reference = GemmaModel.load(GemmaSettings(dtype="float32"), ModelStore(models_dir))
    try:
        ids = reference.render(TEXT)
        n_new = 40
        ref_tokens: list[int] = []
        ref_logits: list[np.ndarray] = []
        with torch.inference_mode():
            step = reference._stepper(ids, capacity=len(ids) + n_new)
            logits = step(None)
            for _ in range(n_new):
                ref_logits.append(logits.numpy().copy())
                ref_tokens.append(int(logits.argmax()))
                logits = step(ref_tokens[-1])
    finally:
        reference.close()
    decoder = Q8Decoder(_q8(gemma), len(ids) + n_new)
    logits_q8 = decoder.forward(np.asarray(ids, dtype=np.int64))
    agree = 0
    for want, ref in zip(ref_tokens, ref_logits, strict=True):
        agree += int(np.argmax(logits_q8)) == want
        assert np.corrcoef(logits_q8, ref)[0, 1] > 0.99
        logits_q8 = decoder.forward(np.asarray([want], dtype=np.int64))
    assert agree / n_new >= 0.9, f"int8 picked the float32 token at {agree} of {n_new} positions"


class _Dequantised:
    """Stand-in for a ``Q8Matrix`` (test only): the same weights, dequantised, multiplied in float.

    Without the int8 rounding of activations, prefill and one-token steps must agree to float
    precision, which checks the decoder's masks, rotary offsets and KV-cache bookkeeping exactly.
    """

    def __init__(self, q: Any) -> None:
        self.w = q.codes().astype(np.float32) * np.repeat(q.scales(), 32, axis=1)
        self.shape = q.shape

    def matmul(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        return np.asarray(x @ self.w.T, dtype=np.float32)

    def gather(self, ids: np.ndarray) -> np.ndarray:
        return self.w[ids]


def _with(weights: Q8Weights, *, window: int, dense: bool) -> Q8Weights:
    config = types.SimpleNamespace(**{**vars(weights.config), "sliding_window": window})
    if not dense:
        return dataclasses.replace(weights, config=config)
    embed: Any = _Dequantised(weights.embed)
    layers = [
        dataclasses.replace(
            layer,
            qkv=_Dequantised(layer.qkv),
            o=_Dequantised(layer.o),
            gate_up=_Dequantised(layer.gate_up),
            down=_Dequantised(layer.down),
        )
        for layer in weights.layers
    ]
    return dataclasses.replace(weights, config=config, embed=embed, lm_head=embed, layers=layers)


def _prefill_and_steps(weights: Q8Weights, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    at_once = Q8Decoder(weights, len(ids)).forward(ids)
    split = Q8Decoder(weights, len(ids))
    split.advance(ids[:7])  # a prompt slice before the last: the cache only, no output head
    assert split.pos == 7
    in_two = split.forward(ids[7:])
    stepwise = Q8Decoder(weights, len(ids))
    for token in ids:
        one_by_one = stepwise.forward(token[None])
    return at_once, in_two, one_by_one


def test_the_last_layer_for_the_last_row_alone_gives_the_full_pass_bits(gemma: GemmaModel) -> None:
    # forward runs the last layer's attention output and MLP for the last row only, and advance
    # not at all; the logits and the cache a later call reads must be those of every row's pass,
    # bit for bit, whether the prompt fills whole four-input tiles (16 tokens) or not (15, 3).
    from mcp_gemma.native import rms_norm

    weights = _q8(gemma)
    ids = np.asarray(gemma.render(TEXT), dtype=np.int64)
    assert len(ids) > 20

    def logits(hidden: np.ndarray, eps: float) -> np.ndarray:
        last = rms_norm(np.ascontiguousarray(hidden[-1:]), weights.final_norm, eps)
        return np.asarray(weights.lm_head.matmul(last, weights.threads)[0])

    for n in (16, 15, 3):
        full = Q8Decoder(weights, n + 5)
        want = logits(full.hidden_states(ids[:n]), full.eps)
        pruned = Q8Decoder(weights, n + 5)
        np.testing.assert_array_equal(pruned.forward(ids[:n]), want)
        # Cached keys and values: a later step sees the same past.
        np.testing.assert_array_equal(
            pruned.forward(ids[n : n + 5]), logits(full.hidden_states(ids[n : n + 5]), full.eps)
        )
        skipped = Q8Decoder(weights, n + 5)
        skipped.advance(ids[:n])
        assert skipped.pos == n
        np.testing.assert_array_equal(skipped.forward(ids[n : n + 5]), pruned_again(weights, ids, n))


def pruned_again(weights: Q8Weights, ids: np.ndarray, n: int) -> np.ndarray:
    """Logits of ``ids[n : n + 5]`` after a full-rows pass over ``ids[:n]``."""
    decoder = Q8Decoder(weights, n + 5)
    decoder.hidden_states(ids[:n])
    return decoder.forward(ids[n : n + 5])


def test_the_packaged_embedding_keeps_its_scales_in_half_the_bytes(gemma: GemmaModel) -> None:
    # The GGUF's own embedding scales are binary16 values, so the int8 table stores them in two
    # bytes each (the output head reads ~10 MB less per token); the layers' re-quantised scales are
    # not, and stay f32. Products are the same bits either way (rust_core q8 tests).
    weights = _q8(gemma)
    rows, cols = weights.embed.shape
    assert weights.embed.nbytes == rows * cols + rows * cols // 32 * 2
    qkv = weights.layers[0].qkv
    r, c = qkv.shape
    assert qkv.nbytes == r * c + r * c // 32 * 4


def test_prefill_equals_one_token_at_a_time_with_a_sliding_window(gemma: GemmaModel) -> None:
    ids = np.asarray(gemma.render(TEXT), dtype=np.int64)
    assert len(ids) > 16  # longer than the window below, so the sliding mask matters
    weights = _q8(gemma)
    at_once, in_two, one_by_one = _prefill_and_steps(_with(weights, window=8, dense=True), ids)
    # float32 sums in another order (BLAS picks its kernel by shape and by its thread limit, which
    # other tests' threadpoolctl settings change): ~1e-5 of the largest logit, so 5e-5 bounds it.
    tol = 5e-5 * np.abs(at_once).max()
    np.testing.assert_allclose(at_once, one_by_one, rtol=0, atol=tol)
    np.testing.assert_allclose(at_once, in_two, rtol=0, atol=tol)
    full, _, _ = _prefill_and_steps(_with(weights, window=512, dense=True), ids)
    assert np.abs(full - at_once).max() > 0.1  # the window changed the answer: the mask is applied
    # With int8 activations, float noise between a [n, d] and a [1, d] pass can flip a rounding,
    # so the real path agrees to within its quantisation noise, not bit for bit.
    q8_at_once, *q8_others = _prefill_and_steps(weights, ids)
    for other in q8_others:
        assert np.corrcoef(q8_at_once, other)[0, 1] > 0.995
        assert int(np.argmax(other)) == int(np.argmax(q8_at_once))


@pytest.mark.usefixtures("gemma")
def test_int8_path_imports_neither_torch_nor_transformers(models_dir: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mcp_gemma.llm.config import GemmaSettings\n"
        "from mcp_gemma.llm.gemma import GemmaModel\n"
        "from mcp_gemma.llm.models import ModelStore\n"
        f"m = GemmaModel.load(GemmaSettings(), ModelStore(Path({str(models_dir)!r})))\n"
        "r = m.generate('The capital of France is', max_new_tokens=3)\n"
        "print(m.info.dtype, r.tokens_out, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env, check=True
    )
    assert out.stdout.split() == ["q8_0", "3", "False", "False"]


@pytest.mark.usefixtures("gemma")
def test_a_corrupt_int8_cache_is_rebuilt(tmp_path: Path, models_dir: Path) -> None:
    source = models_dir / PACKAGED_MODEL
    copy = tmp_path / "models" / PACKAGED_MODEL
    copy.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != Q8_WEIGHTS:
            os.link(item, copy / item.name)  # the dense files are only read
    (copy / Q8_WEIGHTS).write_bytes(b"not a safetensors file")
    notes: list[str] = []
    model = GemmaModel.load(GemmaSettings(), ModelStore(tmp_path / "models"), progress=notes.append)
    try:
        assert any("rebuilding the int8 weights cache" in n for n in notes)
        assert model.generate("The capital of France is", max_new_tokens=3).tokens_out == 3
        assert (copy / Q8_WEIGHTS).stat().st_size > 250_000_000
    finally:
        model.close()


@pytest.mark.usefixtures("gemma")
def test_tokenizer_matches_transformers(models_dir: Path) -> None:
    from transformers import AutoTokenizer

    checkpoint = models_dir / PACKAGED_MODEL
    ours = CheckpointTokenizer(checkpoint)
    theirs = AutoTokenizer.from_pretrained(str(checkpoint))
    samples = [
        "Hello world",
        "  leading spaces and\ttabs\nnew lines\n\n",
        "Unicode: naïve café — 東京 🤖 ∑x²",
        "<start_of_turn>user\nhi<end_of_turn>",
        "",
    ]
    for text in samples:
        for special in (True, False):
            assert ours.encode(text, add_special_tokens=special) == list(
                theirs(text, add_special_tokens=special)["input_ids"]
            )
        ids = ours.encode(text)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours.eos_token_id == theirs.eos_token_id
    assert ours.convert_tokens_to_ids("<end_of_turn>") == theirs.convert_tokens_to_ids("<end_of_turn>")


@pytest.mark.usefixtures("gemma")
def test_chat_templates_render_like_transformers(tmp_path: Path, models_dir: Path) -> None:
    from transformers import AutoTokenizer

    checkpoint = tmp_path / "chat"
    checkpoint.mkdir()
    os.link(models_dir / PACKAGED_MODEL / "tokenizer.json", checkpoint / "tokenizer.json")
    config = json.loads((models_dir / PACKAGED_MODEL / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'tool' %}{{ raise_exception('no tool role') }}{% endif %}"
        "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(config))
    ours = CheckpointTokenizer(checkpoint)
    theirs = AutoTokenizer.from_pretrained(str(checkpoint))
    messages = [{"role": "user", "content": " Hi there "}, {"role": "assistant", "content": "Hello!"}]
    for gen in (True, False):
        assert ours.render_chat(messages, add_generation_prompt=gen) == theirs.apply_chat_template(
            messages, add_generation_prompt=gen, tokenize=False
        )
    with pytest.raises(InvalidInputError, match="no tool role"):
        ours.render_chat([{"role": "tool", "content": "x"}])


def test_q8_0_refuses_what_it_cannot_run(models_dir: Path, gemma: GemmaModel) -> None:
    config = read_config(models_dir / PACKAGED_MODEL)
    assert resolve_dtype("auto", "cpu", config) == "q8_0"
    assert resolve_dtype("auto", "cuda", config) == "bfloat16"
    with pytest.raises(ModelUnavailableError, match="CPU only"):
        resolve_dtype("q8_0", "cuda", config)
    with pytest.raises(ModelUnavailableError, match="Gemma 3 text"):
        resolve_dtype("q8_0", "cpu", types.SimpleNamespace(model_type="llama"))
    with pytest.raises(InvalidInputError, match="lean decoder only"):
        gemma.use_fast_decoder(False)


@pytest.mark.usefixtures("gemma")
def test_your_own_checkpoint_directory_is_never_written(tmp_path: Path, models_dir: Path) -> None:
    mine = tmp_path / "my-gemma"
    mine.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        os.link(models_dir / PACKAGED_MODEL / name, mine / name)
    before = sorted(p.name for p in mine.iterdir())
    store = ModelStore(tmp_path / "models")
    model = GemmaModel.load(GemmaSettings(model=str(mine)), store)
    try:
        assert model.info.dtype == "q8_0"
        assert model.generate("The capital of France is", max_new_tokens=2).tokens_out == 2
    finally:
        model.close()
    assert sorted(p.name for p in mine.iterdir()) == before
    cache = store.q8_cache_path(store.resolve(str(mine)))
    assert cache.is_file() and cache.is_relative_to(tmp_path / "models" / "q8")
    assert store.remove(str(mine)) == [cache.parent]  # only our int8 copy goes
    assert sorted(p.name for p in mine.iterdir()) == before
    with pytest.raises(AccessDeniedError):
        store.remove(str(mine))


def test_a_long_prompt_is_cancelled_between_prefill_slices(gemma: GemmaModel) -> None:
    import threading

    from mcp_gemma.llm.gemma import PREFILL_SLICE

    prompt = "The river runs past the old mill and under the stone bridge. " * 60
    assert gemma.count_tokens(prompt) > 3 * PREFILL_SLICE
    cancel = threading.Event()
    cancel.set()
    result = gemma.generate(prompt, max_new_tokens=5, cancel=cancel)
    assert result.finish_reason == "cancelled"
    assert result.tokens_out == 0
    sliced = gemma.generate(prompt, max_new_tokens=3)  # the same prompt, uninterrupted, in slices
    assert sliced.tokens_out == 3


@pytest.mark.usefixtures("gemma")
def test_auto_falls_back_to_transformers_when_int8_cannot_be_built(tmp_path: Path, models_dir: Path) -> None:
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    source = models_dir / PACKAGED_MODEL
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        os.link(source / name, sharded / name)
    os.link(source / "model.safetensors", sharded / "model-00001-of-00001.safetensors")
    from safetensors import safe_open

    with safe_open(str(source / "model.safetensors"), framework="np") as handle:
        names = list(handle.keys())
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, "model-00001-of-00001.safetensors")}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    notes: list[str] = []
    store = ModelStore(tmp_path / "models")
    model = GemmaModel.load(GemmaSettings(model=str(sharded)), store, progress=notes.append)
    try:
        assert model.info.dtype == "bfloat16"
        assert any("int8 weights unavailable" in n for n in notes)
        assert model.generate("The capital of France is", max_new_tokens=2).tokens_out == 2
    finally:
        model.close()
    with pytest.raises(ModelUnavailableError, match="int8"):
        GemmaModel.load(GemmaSettings(model=str(sharded), dtype="q8_0"), store)


@pytest.mark.usefixtures("gemma")
def test_gemma_threads_sizes_the_int8_pool(gemma: GemmaModel, models_dir: Path) -> None:
    """``gemma.threads`` reaches the Rust kernels: a one-thread model writes exactly the same tokens."""
    single = GemmaModel.load(GemmaSettings(threads=1), ModelStore(models_dir))
    try:
        assert single.info.threads == 1
        assert _q8(single).threads == 1
        got = single.generate("The capital of France is", max_new_tokens=6)
        want = gemma.generate("The capital of France is", max_new_tokens=6)
        assert got.text == want.text
        assert "mcp-gemma-1-0" in thread_names({"mcp-gemma-1-0"})
    finally:
        single.close()
    assert gemma.info.threads == len(os.sched_getaffinity(0))
    assert _q8(gemma).threads is None


def blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (other BLAS copies, e.g. scipy's, are not what numpy calls)."""
    from threadpoolctl import threadpool_info

    return [
        int(i["num_threads"])
        for i in threadpool_info()
        if i["user_api"] == "blas" and "numpy" in Path(i["filepath"]).parent.name
    ]


def test_numpy_blas_runs_on_one_thread_during_int8_generation_only(
    gemma: GemmaModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = blas_threads()
    assert len(before) == 1, "numpy links one BLAS"
    seen: list[list[int]] = []
    forward = Q8Decoder.forward

    def spy(self: Q8Decoder, ids: Any) -> Any:
        seen.append(blas_threads())
        return forward(self, ids)

    monkeypatch.setattr(Q8Decoder, "forward", spy)
    assert gemma.generate("The capital of France is", max_new_tokens=2).tokens_out == 2
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before


def test_int8_logits_keep_their_bits_on_another_worker_thread(
    gemma: GemmaModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server runs each generation on whichever worker thread is free, after other holders of the
    one-thread BLAS (the embedder) on other threads that live on; the attention products' bits, and
    so greedy answers, differ between one OpenBLAS thread and its pool, so the hold must take
    effect there too (it silently did not: the console test's answer turned ' blue' to ' orange')."""
    from mcp_gemma.compute import one_thread_blas

    seen: list[tuple[list[int], str]] = []
    forward = Q8Decoder.forward

    def spy(self: Q8Decoder, ids: Any) -> Any:
        logits = forward(self, ids)
        seen.append((blas_threads(), hashlib.sha256(logits.tobytes()).hexdigest()))
        return logits

    monkeypatch.setattr(Q8Decoder, "forward", spy)
    prompt = "What are the three primary colours?"
    assert gemma.generate(prompt, max_new_tokens=2).tokens_out == 2
    here, seen[:] = list(seen), []
    held, finish = threading.Event(), threading.Event()

    def earlier_holder() -> None:
        with one_thread_blas.held():
            held.set()
        finish.wait(60)

    holder = threading.Thread(target=earlier_holder)
    holder.start()
    try:
        assert held.wait(60)
        worker = threading.Thread(target=gemma.generate, args=(prompt,), kwargs={"max_new_tokens": 2})
        worker.start()
        worker.join(120)
    finally:
        finish.set()
        holder.join(60)
    assert [threads for threads, _ in here] == [[1], [1]]
    assert seen == here
