"""A BERT sentence embedder on numpy alone (no torch): all-MiniLM-L6-v2's forward pass, mean pooling,
L2 norm, reading the same ``model.safetensors`` and ``tokenizer.json`` as the torch embedder.

Why: the embedder's most frequent call is one short query, where torch spends its time dispatching
a few hundred small operators (measured ~18 ms for an 8-token query here), and loading it means
``import torch`` (~2.5 s, ~500 MiB resident). The same arithmetic in float32 numpy, fused where it
helps (one QKV product; bias + GELU, bias + residual + layer norm and attention in the Rust core, over
packed rows with no padding), answers a query in a couple of milliseconds and loads in a fraction of a
second; the tests hold it to the torch embedder's vectors.

Supported: BERT encoders with absolute positions and exact (erf) GELU, which is what
sentence-transformers' MiniLM / mpnet-free BERT checkpoints use; anything else is refused with
:class:`UnsupportedModel` and the torch embedder is used instead.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from mcp_gemma import native
from mcp_gemma.compute import one_thread_blas
from mcp_gemma.embeddings.base import ProgressFn, Vectors
from mcp_gemma.embeddings.minilm import token_limit
from mcp_gemma.errors import ModelUnavailableError, OperationCancelledError
from mcp_gemma.native import F16Matrix

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
T = TypeVar("T")
TOKENS_PER_BATCH = 8_192  # tokens per forward pass, each text counted at the longest one's length
SMALL_CALL_TOKENS = 512  # up to this many tokens (a query, a short note): one forward pass, unbatched
# texts of up to this many tokens run on binary16 weights (see _HalfLayer): a query, a short note.
# One text alone would gain further (40 tokens 13.4 ms against 19.5 on f32, 2026-12-02), but batches
# of longer texts lose (44-token sentences 84 -> 66 sentences/s at a 64-token limit), and a text's
# vector must not depend on its batch-mates, so the limit is one for both
HALF_CALL_TOKENS = 32
# a forward pass's tokens are shared out across threads, at least this many each: at 32 a text of
# 33-63 tokens (past the binary16 path) ran on one thread; at 16 on two, alternated in one process
# (2026-12-02, medians of 8 x 8): 41 tokens 27.8 -> 24.8 ms, 54 tokens 35.9 -> 28.3, 59 tokens
# 37.3 -> 29.0, 92 tokens unchanged (43-44 ms)
ROWS_PER_WORKER = 16
MAX_WORKERS = 4  # threads for a forward pass (BLAS on one thread in each)


class UnsupportedModel(Exception):
    """The checkpoint is not a plain BERT encoder this module implements."""


@dataclass
class _Layer:
    qkv_w: F32  # [hidden, 3 * hidden] (transposed: x @ w)
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1: tuple[F32, F32]
    up_w: F32
    up_b: F32
    down_w: F32
    down_b: F32
    ln2: tuple[F32, F32]


@dataclass
class _HalfLayer:
    """A layer's four weight matrices in binary16 (``x @ w`` as ``m.matmul(x)``), for short texts.

    A query of a dozen tokens does little arithmetic per weight, so its forward pass is bound by
    reading the weights (~42 MB in f32, more than a shared L3 keeps); binary16 halves that, while
    every product and sum stays f32, so vectors stay within ~1e-6 cosine of the f32 path's.
    """

    qkv: F16Matrix
    out: F16Matrix
    up: F16Matrix
    down: F16Matrix

    @staticmethod
    def of(layer: _Layer) -> _HalfLayer:
        def half(w: F32) -> F16Matrix:  # w is [in, out]; the Rust matrix is [out, in]
            return F16Matrix.from_bits(np.ascontiguousarray(w.T).astype(np.float16).view(np.uint16))

        return _HalfLayer(half(layer.qkv_w), half(layer.out_w), half(layer.up_w), half(layer.down_w))


def _linear(x: F32, w: F32, w16: F16Matrix, half: bool, threads: int | None) -> F32:
    """``x @ w``: on the binary16 copy when ``half`` (``threads=1``: this thread), else BLAS on the
    f32 weights."""
    if half:
        return w16.matmul(np.ascontiguousarray(x), threads)
    out: F32 = x @ w
    return out


def _layer_norm(x: F32, wb: tuple[F32, F32], eps: float) -> F32:
    # sum / n is what x.mean computes (the same bits) without its Python-level counting, which on a
    # query's few rows costs as much as the sum (26 means per forward pass)
    n = np.float32(x.shape[-1])
    mean: F32 = x.sum(axis=-1, keepdims=True) / n
    centred = x - mean
    var: F32 = (centred * centred).sum(axis=-1, keepdims=True) / n
    out: F32 = centred / np.sqrt(var + eps) * wb[0] + wb[1]
    return out


class LeanBertEmbedder:
    """Mean-pooled, L2-normalised BERT sentence embeddings in float32 numpy."""

    def __init__(
        self, model_dir: Path, model_id: str, *, batch_size: int = 32, max_seq_length: int = 256
    ) -> None:
        started = time.perf_counter()
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise UnsupportedModel(
                f"{config.get('model_type')} / {config.get('hidden_act')}: not a BERT with exact GELU"
            )
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModel("only absolute position embeddings are implemented")
        weights_file = model_dir / "model.safetensors"
        if not weights_file.is_file():
            raise UnsupportedModel("no model.safetensors")
        try:
            raw = load_file(str(weights_file))
            self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise ModelUnavailableError(f"cannot load the embedder from {model_dir}: {exc}") from exc
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""

        def w(name: str) -> F32:
            key = prefix + name
            if key not in raw:
                raise UnsupportedModel(f"weight {key} is missing")
            return np.ascontiguousarray(raw[key], dtype=np.float32)

        self.model_dir = model_dir
        self.model_id = model_id
        self.backend = "numpy"
        self.batch_size = batch_size
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.token_type0 = w("embeddings.token_type_embeddings.weight")[0]
        self.ln_embed = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (w(p + f"attention.self.{n}.weight") for n in ("query", "key", "value"))
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(np.concatenate([q, k, v]).T),
                    qkv_b=np.concatenate(
                        [w(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]
                    ),
                    out_w=np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    out_b=w(p + "attention.output.dense.bias"),
                    ln1=(
                        w(p + "attention.output.LayerNorm.weight"),
                        w(p + "attention.output.LayerNorm.bias"),
                    ),
                    up_w=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    up_b=w(p + "intermediate.dense.bias"),
                    down_w=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    down_b=w(p + "output.dense.bias"),
                    ln2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )
        raw.clear()  # the layers hold their own (transposed, fused) copies
        self.half_layers = [_HalfLayer.of(layer) for layer in self.layers]
        limit = token_limit(model_dir, min(max_seq_length, int(config.get("max_position_embeddings", 512))))
        self.max_seq_length = limit
        self._arange = np.arange(limit, dtype=np.intp)
        self._tokenizer.enable_truncation(max_length=limit)
        self._tokenizer.no_padding()
        self._lock = threading.Lock()  # a forward pass already uses every core
        self._cores = max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
        self._pool: ThreadPoolExecutor | None = None  # helpers of the packed forward pass, made on first use
        self.load_seconds = time.perf_counter() - started
        logger.info("embedder %s loaded in %.2f s (numpy, dim %d)", model_id, self.load_seconds, self.dim)

    def embed(
        self,
        texts: Sequence[str],
        *,
        cancel: threading.Event | None = None,
        progress: ProgressFn | None = None,
    ) -> Vectors:
        """Embed ``texts`` into unit vectors, in input order (batched by length to limit padding)."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(n), key=lambda i: len(encodings[i].ids))
        done = 0
        small = sum(len(e.ids) for e in encodings) <= SMALL_CALL_TOKENS
        with self._lock, one_thread_blas.held():
            start = 0
            while start < n:
                if cancel is not None and cancel.is_set():
                    raise OperationCancelledError("embedding was cancelled")
                longest = len(encodings[order[min(n, start + self.batch_size) - 1]].ids)
                size = max(1, min(self.batch_size, TOKENS_PER_BATCH // max(1, longest)))
                idx = order[start : start + size]
                # a short text always takes the binary16 path, alone or batched, so its vector
                # does not depend on its batch-mates (sorted by length: the short ones lead)
                half = len(encodings[idx[0]].ids) <= HALF_CALL_TOKENS
                if half:
                    idx = [i for i in idx if len(encodings[i].ids) <= HALF_CALL_TOKENS]
                    # threads=None: a binary16 product big enough to pay for the hand-off splits its
                    # weight rows over rayon's pool (same bits as on one thread); smaller ones stay here
                    out[idx] = self._forward([encodings[i].ids for i in idx], half=True, threads=None)
                else:
                    if small:  # what is left of a small call, in one pass across the cores
                        idx = order[start:]
                    out[idx] = self._forward_packed([encodings[i].ids for i in idx])
                start += len(idx)
                done += len(idx)
                if progress is not None:
                    progress(done, n)
        return out

    def _forward(self, batch: list[list[int]], *, half: bool = False, threads: int | None = 1) -> F32:
        """Pooled unit vectors of token-id lists; ``half`` runs the products on the binary16 weights
        (short texts), on ``threads`` (1: this thread).

        The texts' token rows are packed with no padding: the products see only real tokens, and
        what numpy did slowly between them (bias + exact GELU, bias + residual + layer norm, and
        attention, which works text by text) runs in the Rust core, one pass each, on rayon's
        threads once a batch is big enough to pay for the hand-off.
        """
        lengths = [len(seq) for seq in batch]
        total = sum(lengths)
        ids = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64, count=total)
        positions = np.concatenate([self._arange[:n] for n in lengths])
        h = self.word[ids] + self.position[positions] + self.token_type0  # [tokens, d]
        h = _layer_norm(h, self.ln_embed, self.eps)
        for layer, h16 in zip(self.layers, self.half_layers, strict=True):
            qkv = _linear(h, layer.qkv_w, h16.qkv, half, threads)
            qkv += layer.qkv_b
            x = _linear(native.bert_attention(qkv, lengths, self.heads), layer.out_w, h16.out, half, threads)
            native.add_layer_norm(x, layer.out_b, h, *layer.ln1, self.eps)
            act = _linear(x, layer.up_w, h16.up, half, threads)
            native.bias_gelu(act, layer.up_b)
            h = _linear(act, layer.down_w, h16.down, half, threads)
            native.add_layer_norm(h, layer.down_b, x, *layer.ln2, self.eps)
        return self._pool_rows(h, lengths)

    def _pool_rows(self, h: F32, lengths: list[int]) -> F32:
        """Mean of each text's run of rows of ``h``, L2-normalised."""
        starts = np.fromiter(itertools.accumulate(lengths[:-1], initial=0), dtype=np.intp, count=len(lengths))
        pooled = np.add.reduceat(h, starts, axis=0) / np.asarray(lengths, dtype=np.float32)[:, None]
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        result: F32 = (pooled / norms).astype(np.float32, copy=False)
        return result

    def _forward_packed(self, seqs: list[list[int]]) -> F32:
        """Pooled unit vectors of token-id lists, the same arithmetic as :meth:`_forward`, with the
        products shared out across threads (BLAS on one thread each; the caller holds it to one).

        Every f32 pass runs this way, small or batched: a small call (a document's few chunks) has
        too few rows for BLAS to split well, and on a batch BLAS's own threads (which spin after each
        product) took the cores from the Rust kernels between the products, while here
        every step that works row by row (the four products, GELU, layer norms) splits the packed
        rows into contiguous runs, one per thread (the Rust kernels release the GIL); attention is
        one Rust call that shares the texts out itself. Two hand-offs per layer.
        """
        lengths = [len(seq) for seq in seqs]
        total = sum(lengths)
        workers = max(1, min(self._cores, total // ROWS_PER_WORKER))
        cuts = [total * w // workers for w in range(workers + 1)]
        rows = [slice(a, b) for a, b in itertools.pairwise(cuts)]
        d = self.dim

        ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total)
        positions = np.concatenate([self._arange[:n] for n in lengths])
        h = self.word[ids] + self.position[positions] + self.token_type0  # [tokens, d]
        h = _layer_norm(h, self.ln_embed, self.eps)
        qkv = np.empty((total, 3 * d), dtype=np.float32)
        for layer in self.layers:

            def project(r: slice, layer: _Layer = layer) -> None:
                np.matmul(h[r], layer.qkv_w, out=qkv[r])
                qkv[r] += layer.qkv_b

            def feed_forward(r: slice, ctx: F32, layer: _Layer = layer) -> None:
                x: F32 = ctx[r] @ layer.out_w
                native.add_layer_norm(x, layer.out_b, h[r], *layer.ln1, self.eps)
                act: F32 = x @ layer.up_w
                native.bias_gelu(act, layer.up_b)
                y: F32 = act @ layer.down_w
                native.add_layer_norm(y, layer.down_b, x, *layer.ln2, self.eps)
                h[r] = y

            self._each(project, rows)
            ctx = native.bert_attention(qkv, lengths, self.heads)
            self._each(functools.partial(feed_forward, ctx=ctx), rows)
        return self._pool_rows(h, lengths)

    def _each(self, fn: Callable[[T], None], parts: Sequence[T]) -> None:
        """``fn`` over ``parts``: the first on this thread, the rest on the helper threads; returns
        when all are done (the first error is raised)."""
        if len(parts) > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self._cores - 1, thread_name_prefix="embedder")
        futures: list[Future[None]] = [self._pool.submit(fn, p) for p in parts[1:]] if self._pool else []
        try:
            fn(parts[0])
        finally:
            wait(futures)
        for f in futures:
            f.result()
