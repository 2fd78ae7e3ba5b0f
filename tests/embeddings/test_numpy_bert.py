"""The numpy embedder (the default on a CPU) against the torch one on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mcp_gemma.embeddings.config import EmbeddingSettings
from mcp_gemma.embeddings.minilm import PACKAGED_MODEL, MiniLMEmbedder, resolve_model_dir
from mcp_gemma.embeddings.numpy_bert import HALF_CALL_TOKENS, LeanBertEmbedder, UnsupportedModel
from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.errors import ModelUnavailableError, OperationCancelledError

pytestmark = pytest.mark.anyio

TEXTS = [
    "Tides rise and fall with the pull of the moon.",
    "",
    "a",
    "Glaciers are slow rivers of ice that carve valleys; " * 40,  # truncated at 256 tokens
    "Ünïcödé, emoji 🌊 and CJK 潮汐 go through the same tokenizer.",
    "What is photosynthesis?",
]


@pytest.fixture(scope="module")
def lean() -> LeanBertEmbedder:
    return LeanBertEmbedder(resolve_model_dir(PACKAGED_MODEL), PACKAGED_MODEL)


@pytest.fixture(scope="module")
def reference() -> MiniLMEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return MiniLMEmbedder()


def test_vectors_match_the_torch_embedder(lean: LeanBertEmbedder, reference: MiniLMEmbedder) -> None:
    ours, want = lean.embed(TEXTS), reference.embed(TEXTS)
    assert ours.shape == want.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float((ours * want).sum(axis=1).min()) > 0.99999
    # Padding inside a batch changes nothing: each text alone gives the same vector.
    alone = np.stack([lean.embed([t])[0] for t in TEXTS])
    np.testing.assert_allclose(alone, ours, atol=2e-6)


def real_short_texts() -> list[str]:
    """Queries and notes of 1 to 20 words cut from this project's own docs (real English prose)."""
    root = Path(__file__).resolve().parents[2]
    words = " ".join(
        (root / name).read_text(encoding="utf-8") for name in ("README.md", "docs/SCALING.md")
    ).split()
    return [" ".join(words[i : i + 1 + i % 20]) for i in range(0, 12 * 300, 12)]


def test_short_texts_on_binary16_weights_keep_the_f32_vectors(lean: LeanBertEmbedder) -> None:
    texts = real_short_texts()
    ids = [lean._tokenizer.encode(t).ids for t in texts]
    assert len(texts) == 300 and min(map(len, ids)) == 3
    short = [i for i, seq in enumerate(ids) if len(seq) <= HALF_CALL_TOKENS]
    assert len(short) > 150  # most of them take the binary16 path when embedded alone
    assert sum(len(ids[i]) > 16 for i in short) > 50  # medium texts (a note of 17-32 tokens) too
    full = np.concatenate([lean._forward([seq]) for seq in ids])
    half = np.concatenate([lean._forward([seq], half=True) for seq in ids])
    cosines = (full * half).sum(axis=1)
    # measured: 1 - cosine <= 5e-7 (binary16 weights, f32 arithmetic); the stored vectors' bound is 1e-3
    assert float(cosines.min()) > 1 - 1e-5
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    # embed() takes that path for a short text, alone or batched with longer ones, and the f32 one
    # for a longer text (the paths differ by ~4e-5 per element; padding moves a vector by < 2e-6)
    longer = [i for i, seq in enumerate(ids) if len(seq) > HALF_CALL_TOKENS]
    mixed = lean.embed(texts)
    np.testing.assert_allclose(mixed[short], half[short], atol=2e-6)
    np.testing.assert_allclose(mixed[longer], full[longer], atol=2e-6)
    np.testing.assert_allclose(lean.embed([texts[short[0]]])[0], half[short[0]], atol=2e-6)
    np.testing.assert_allclose(lean.embed([texts[longer[0]]])[0], full[longer[0]], atol=2e-6)
    assert np.abs(half[short] - full[short]).max() > 1e-5  # the two paths are told apart


def test_many_texts_keep_their_order_report_progress_and_cancel(lean: LeanBertEmbedder) -> None:
    texts = [f"note {i}: " + "word " * (i % 50) for i in range(100)]
    seen: list[tuple[int, int]] = []
    out = lean.embed(texts, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_allclose(out[37], lean.embed([texts[37]])[0], atol=2e-6)
    assert seen[-1] == (100, 100) and len(seen) >= 4
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(OperationCancelledError):
        lean.embed(texts, cancel=cancel)


def test_other_architectures_are_refused_for_torch_to_take(tmp_path: Path) -> None:
    source = resolve_model_dir(PACKAGED_MODEL)
    copy = tmp_path / "model"
    shutil.copytree(source, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(UnsupportedModel, match="exact GELU"):
        LeanBertEmbedder(copy, str(copy))
    forced = EmbeddingService(EmbeddingSettings(model=str(copy), backend="numpy"))
    with pytest.raises(ModelUnavailableError, match="backend='numpy' cannot run"):
        forced._default_factory()
    fallback = EmbeddingService(EmbeddingSettings(model=str(copy)))._default_factory()
    assert fallback.backend == "torch"


async def test_service_uses_numpy_on_the_cpu_and_torch_when_asked() -> None:
    default = EmbeddingService(EmbeddingSettings())
    vec = await default.embed_one("hello world")
    assert default.status().detail["backend"] == "numpy" and vec.shape == (384,)
    torch_backed = EmbeddingService(EmbeddingSettings(backend="torch"))
    other = await torch_backed.embed_one("hello world")
    assert torch_backed.status().detail["backend"] == "torch"
    assert float(vec @ other) > 0.99999


def test_queries_and_large_calls_need_no_torch() -> None:
    code = (
        "import sys, anyio\n"
        "from mcp_gemma.embeddings.config import EmbeddingSettings\n"
        "from mcp_gemma.embeddings.service import EmbeddingService\n"
        "s = EmbeddingService(EmbeddingSettings(batch_size=4, cache_size=0))\n"
        "v = anyio.run(s.embed_one, 'tides and the moon')\n"
        "assert v.shape == (384,)\n"
        "for i in range(3):  # calls of more than batch_size texts, as an ingest makes\n"
        "    assert anyio.run(s.embed, [f'chunk {i}.{j}' for j in range(6)]).shape == (6, 384)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


async def test_large_calls_stay_on_the_numpy_embedder(
    lean: LeanBertEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_torch(*args: object, **kwargs: object) -> None:
        raise AssertionError("the service built a torch embedder on the CPU")

    monkeypatch.setattr(MiniLMEmbedder, "__init__", no_torch)
    service = EmbeddingService(EmbeddingSettings(batch_size=2), factory=lambda: lean)
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        seen.append((done, total))

    for i in range(3):  # batch-sized calls of fresh texts, as a batch_ingest makes: numpy every time
        texts = [f"paragraph {j} of ingest {i}" for j in range(7)]
        out = await service.embed(texts, progress=progress)
        np.testing.assert_array_equal(out, lean.embed(texts))  # the embedder's own bits
    assert seen == [(7, 7)] * 3  # one forward pass each: the embedder batches 32 short texts
    again = await service.embed(texts)  # from the cache
    np.testing.assert_array_equal(again, out)
    detail = service.status().detail
    assert (detail["cache_hits"], detail["cache_misses"]) == (7, 21) and "bulk_loaded" not in detail
