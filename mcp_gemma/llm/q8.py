"""Block-int8 (GGUF ``Q8_0`` layout) weights for the lean Gemma 3 decoder, cached next to the model.

Why: a decode step reads every weight once, so on a CPU its time is memory traffic plus, for
bf16 on hosts without native bf16 arithmetic, conversion. Int8 codes with one f32 scale per 32
weights are half of bf16 and a quarter of f32, and the products run in the Rust core
(:class:`mcp_gemma.native.Q8Matrix`, integer dot products, GIL released). The packaged model's embedding is
itself ``Q8_0`` in the GGUF, so for it the re-quantisation reproduces the file's own codes.

The decoder here is the arithmetic of ``fast_gemma3.Gemma3Decoder`` in float32 numpy around the
Rust products: importing torch alone costs ~2.5 s and ~500 MB resident (its CUDA libraries), more
than the weights, and numpy's per-call overhead on these small arrays is lower than torch's.

The cache (``model.q8_0.safetensors``) is built once from the dense checkpoint, written under a
temporary name and renamed into place, and records the size and mtime of what it was built
from; a stale or unreadable cache is rebuilt. Loading it needs neither transformers nor the
dense weights, so a cached load is a few hundred MB of reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from mcp_gemma.errors import ModelUnavailableError
from mcp_gemma.llm.convert import Q8_WEIGHTS, WEIGHTS
from mcp_gemma.llm.fast_gemma3 import Gemma3Shape, rope_scale

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import numpy as np
    from numpy.typing import NDArray

    from mcp_gemma.native import Q8Matrix

    F32 = NDArray[np.float32]

logger = logging.getLogger(__name__)

__all__ = ["Q8_WEIGHTS", "Q8Decoder", "Q8Layer", "Q8Weights", "load_q8_weights", "read_config"]

Q8_FORMAT = "1"

_NORMS = (
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
)


def read_config(checkpoint: Path) -> SimpleNamespace | None:
    """The checkpoint's ``config.json`` (and ``generation_config.json``) as attributes, or None."""
    try:
        raw = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    config = SimpleNamespace(**raw)
    try:
        generation = json.loads((checkpoint / "generation_config.json").read_text(encoding="utf-8"))
        config.generation = SimpleNamespace(**generation) if isinstance(generation, dict) else None
    except (OSError, ValueError):
        config.generation = None
    return config


def _source_stamp(dense: Path) -> str:
    stat = dense.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def build_q8_cache(checkpoint: Path, target: Path, config: Any, *, say: Callable[[str], None]) -> None:
    """Quantise the dense checkpoint's linear weights into ``target`` (atomic), streaming: one
    (fused) matrix, or a block of the embedding's rows, in memory at a time."""
    import numpy as np

    from mcp_gemma.llm.tensor_file import TensorFile, f32, write_tensors
    from mcp_gemma.native import Q8Matrix

    dense = checkpoint / WEIGHTS
    started = time.perf_counter()
    say(f"quantising {dense.name} to block int8 (once)")
    with TensorFile(dense) as handle:
        keys = set(handle.keys())
        # (output name, dense sources stacked by rows, kind): "q8" matrices, "norm" vectors stored as 1 + w
        plan: list[tuple[str, list[str], str]] = [("embed", ["model.embed_tokens.weight"], "q8")]
        if "lm_head.weight" in keys and not getattr(config, "tie_word_embeddings", True):
            plan.append(("lm_head", ["lm_head.weight"], "q8"))
        plan.append(("final_norm", ["model.norm.weight"], "norm"))
        for i in range(int(config.num_hidden_layers)):
            p = f"model.layers.{i}."
            plan += [
                (f"{i}.qkv", [f"{p}self_attn.{x}_proj.weight" for x in ("q", "k", "v")], "q8"),
                (f"{i}.o", [f"{p}self_attn.o_proj.weight"], "q8"),
                (f"{i}.gate_up", [f"{p}mlp.{x}_proj.weight" for x in ("gate", "up")], "q8"),
                (f"{i}.down", [f"{p}mlp.down_proj.weight"], "q8"),
                *((f"{i}.norm{j}", [f"{p}{norm}.weight"], "norm") for j, norm in enumerate(_NORMS)),
                (f"{i}.q_norm", [f"{p}self_attn.q_norm.weight"], "norm"),
                (f"{i}.k_norm", [f"{p}self_attn.k_norm.weight"], "norm"),
            ]
        specs: list[tuple[str, str, tuple[int, ...]]] = []
        for name, sources, kind in plan:
            shapes = [handle.shape(source) for source in sources]
            if kind == "norm":
                specs.append((name, "F32", shapes[0]))
                continue
            rows, cols = sum(s[0] for s in shapes), shapes[0][1]
            specs += [(f"{name}.codes", "I8", (rows, cols)), (f"{name}.scales", "F32", (rows, cols // 32))]

        def blocks(sources: list[str]) -> Iterator[NDArray[np.float32]]:
            """The stacked sources in blocks of rows (tall matrices such as the embedding split)."""
            for source in sources:
                n, cols = handle.shape(source)
                step = max(1, ROW_BLOCK_BYTES // max(1, cols))
                for first in range(0, n, step):
                    yield f32(handle.read(source, (first, first + step)))

        def chunks() -> Iterator[NDArray[Any]]:
            for _, sources, kind in plan:
                if kind == "norm":
                    yield f32(handle.read(sources[0])) + np.float32(1.0)
                    continue
                # codes, then scales: each block is quantised twice so neither is held whole
                for part in ("codes", "scales"):
                    for block in blocks(sources):
                        matrix = Q8Matrix.quantize(block)
                        yield matrix.codes() if part == "codes" else matrix.scales()

        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            write_tensors(Path(tmp), specs, chunks(), {"format": Q8_FORMAT, "source": _source_stamp(dense)})
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    logger.info("built %s in %.1f s", target, time.perf_counter() - started)


@dataclass
class Q8Layer:
    """One decoder layer: fused int8 projections, norm scales stored as ``(1 + w)``."""

    qkv: Q8Matrix
    o: Q8Matrix
    gate_up: Q8Matrix
    down: Q8Matrix
    norms: tuple[F32, F32, F32, F32]
    q_norm: F32
    k_norm: F32
    sliding: bool


ROW_BLOCK_BYTES = 16 << 20  # int8 codes per block of the embedding as it loads


class Q8Rows:
    """A tall int8 matrix (the embedding, tied to the output head) held as blocks of rows.

    Loading it one block at a time keeps the transient copy (file buffer → Rust) to a block instead
    of the whole 200 MB table, which would otherwise set the peak memory of a load; each output
    row's product is the same either way.
    """

    def __init__(self, blocks: list[Q8Matrix]) -> None:
        import numpy as np

        self.blocks = blocks
        rows = [b.shape[0] for b in blocks]
        self.starts = np.cumsum([0, *rows])
        self.shape = (int(self.starts[-1]), int(blocks[0].shape[1]))
        self.nbytes = sum(b.nbytes for b in blocks)

    def matmul(self, x: F32, threads: int | None = None) -> F32:
        """``x @ W.T`` for x of shape (n, cols): one pass over the blocks into one array (the
        same bits as each block's own product; a product per block, joined, cost ~2.7 ms more of
        the ~14 ms a token's output head took)."""
        from mcp_gemma.native import q8_matmul_stacked

        return q8_matmul_stacked(self.blocks, x, threads)

    def gather(self, ids: NDArray[np.int64]) -> F32:
        """The dequantised rows ``ids``."""
        import numpy as np

        out: F32 = np.empty((len(ids), self.shape[1]), dtype=np.float32)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        for block in np.unique(which):
            mask = which == block
            out[mask] = self.blocks[int(block)].gather(ids[mask] - self.starts[block])
        return out

    def codes(self) -> NDArray[np.int8]:
        import numpy as np

        return np.concatenate([b.codes() for b in self.blocks])

    def scales(self) -> F32:
        import numpy as np

        return np.concatenate([b.scales() for b in self.blocks])


@dataclass
class Q8Weights:
    """Everything the decoder reads."""

    config: Any
    embed: Q8Matrix | Q8Rows
    lm_head: Q8Matrix | Q8Rows
    final_norm: F32
    layers: list[Q8Layer]
    threads: int | None = None  # workers of the products (gemma.threads); None = the shared pool

    @property
    def nbytes(self) -> int:
        """Bytes of codes, scales and norms (the tied embedding counted once)."""
        mats = {id(m): m.nbytes for m in (self.embed, self.lm_head)}
        for layer in self.layers:
            mats.update({id(m): m.nbytes for m in (layer.qkv, layer.o, layer.gate_up, layer.down)})
        return sum(mats.values())


def load_q8_weights(checkpoint: Path, config: Any, *, cache: Path, say: Callable[[str], None]) -> Q8Weights:
    """The decoder's weights from the block-int8 cache, building (or rebuilding) it when needed."""
    dense = checkpoint / WEIGHTS
    if not dense.is_file():
        raise ModelUnavailableError(f"{checkpoint} has no {WEIGHTS}; cannot build int8 weights from it")
    for attempt in range(2):
        if attempt or not cache.is_file():
            try:
                build_q8_cache(checkpoint, cache, config, say=say)
            except Exception as exc:  # unreadable dtype, missing tensor, disk full: say which
                raise ModelUnavailableError(f"could not build int8 weights from {dense}: {exc}") from exc
        try:
            return _read_q8(cache, config, expect_source=_source_stamp(dense))
        except _StaleCache as exc:
            if attempt:
                raise ModelUnavailableError(f"int8 weights cache {cache} is unusable: {exc}") from exc
            say(f"rebuilding the int8 weights cache ({exc})")
    raise AssertionError("unreachable")  # pragma: no cover


class _StaleCache(Exception):
    pass


def _read_q8(path: Path, config: Any, *, expect_source: str) -> Q8Weights:
    from mcp_gemma.llm.tensor_file import TensorFile, f32
    from mcp_gemma.native import Q8Matrix

    try:
        with TensorFile(path) as handle:
            meta = handle.metadata
            if meta.get("format") != Q8_FORMAT or meta.get("source") != expect_source:
                raise _StaleCache("built from other weights or by another version")
            keys = set(handle.keys())

            def mat(name: str) -> Q8Matrix:
                return Q8Matrix.from_parts(handle.read(f"{name}.codes"), handle.read(f"{name}.scales"))

            def rows(name: str) -> Q8Rows:
                n, cols = handle.shape(f"{name}.codes")
                step = max(1, ROW_BLOCK_BYTES // max(1, cols))
                return Q8Rows(
                    [
                        Q8Matrix.from_parts(
                            handle.read(f"{name}.codes", (i, i + step)),
                            handle.read(f"{name}.scales", (i, i + step)),
                        )
                        for i in range(0, n, step)
                    ]
                )

            def vec(name: str) -> F32:
                return f32(handle.read(name))

            embed = rows("embed")  # first: its transient buffers come while little else is resident
            weights = Q8Weights(
                config=config,
                embed=embed,
                lm_head=rows("lm_head") if "lm_head.codes" in keys else embed,
                final_norm=vec("final_norm"),
                layers=[
                    Q8Layer(
                        qkv=mat(f"{i}.qkv"),
                        o=mat(f"{i}.o"),
                        gate_up=mat(f"{i}.gate_up"),
                        down=mat(f"{i}.down"),
                        norms=(vec(f"{i}.norm0"), vec(f"{i}.norm1"), vec(f"{i}.norm2"), vec(f"{i}.norm3")),
                        q_norm=vec(f"{i}.q_norm"),
                        k_norm=vec(f"{i}.k_norm"),
                        sliding=kind == "sliding_attention",
                    )
                    for i, kind in enumerate(config.layer_types)
                ],
            )
    except _StaleCache:
        raise
    except Exception as exc:  # a truncated or foreign file: rebuild it
        raise _StaleCache(f"{type(exc).__name__}: {exc}") from exc
    if embed.shape[0] != int(config.vocab_size) or len(weights.layers) != int(config.num_hidden_layers):
        raise _StaleCache("shapes do not match config.json")
    return weights


class Q8Decoder(Gemma3Shape):
    """Prefill and single-token steps of Gemma 3 for one sequence, with its own KV cache."""

    def __init__(self, weights: Q8Weights, capacity: int) -> None:
        import numpy as np

        cfg = weights.config
        super().__init__(cfg)
        self.w = weights
        self.embed_scale = np.float32(math.sqrt(self.hidden))
        shape = (self.n_kv, capacity, self.head_dim)
        self._k = [np.zeros(shape, dtype=np.float32) for _ in weights.layers]
        self._v = [np.zeros(shape, dtype=np.float32) for _ in weights.layers]
        positions = np.arange(capacity, dtype=np.float64)
        self._rope: dict[bool, tuple[F32, F32]] = {}
        for sliding in (True, False):
            kind = "sliding_attention" if sliding else "full_attention"
            theta, factor = rope_scale(cfg.rope_parameters[kind])
            inv = 1.0 / theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim) / factor
            freqs = np.outer(positions, inv)
            emb = np.concatenate((freqs, freqs), axis=-1)
            sin = np.sin(emb)
            sin[:, : self.head_dim // 2] *= -1.0  # rotate_half(x) * sin == swap_halves(x) * this
            self._rope[sliding] = (np.cos(emb).astype(np.float32), sin.astype(np.float32))
        # q and k heads are adjacent in the fused projection: one norm + one rotation serves both.
        self._qk_norm = [
            np.ascontiguousarray(
                np.concatenate(
                    [np.tile(layer.q_norm, (self.n_heads, 1)), np.tile(layer.k_norm, (self.n_kv, 1))]
                )
            )
            for layer in weights.layers
        ]
        self.pos = 0

    def forward(self, ids: NDArray[np.int64]) -> F32:
        """Run ``ids`` (1-D) from the current position; return the logits of the last one."""
        from mcp_gemma.native import rms_norm

        last = rms_norm(self._layers(ids, _LAST)[-1:], self.w.final_norm, self.eps)
        logits: F32 = self.w.lm_head.matmul(last, self.w.threads)[0]
        return logits

    def advance(self, ids: NDArray[np.int64]) -> None:
        """Run ``ids`` into the KV cache without logits: a prompt slice before the last skips the
        output head (a 262,144-row product) that ``forward`` ends with, and the last layer's
        attention output and MLP (only its keys and values are kept)."""
        self._layers(ids, _NONE)

    def hidden_states(self, ids: NDArray[np.int64]) -> F32:
        """Run ``ids`` from the current position; every row's last hidden state (before the final
        norm). ``forward`` computes the last layer for the last row alone, with the same bits."""
        return self._layers(ids, _ALL)

    def _layers(self, ids: NDArray[np.int64], rows: int) -> F32:
        """Run ``ids`` through every layer from the current position; the hidden states of the
        rows ``rows`` names (``_ALL``, ``_LAST``: one or more copies of the last, ``_NONE``).

        Only the keys and values of the last layer outlive the call, so the rows nobody reads skip
        its attention output and MLP products: 4.6% of a prompt's multiply-adds (three of the
        last layer's four products, 1/18 of the model). The last row's value is the one the full
        pass gives, bit for bit: every step after attention is row by row, and a product's row
        takes the arithmetic it took in the full pass. The Rust products of four or more inputs
        give each (weight row, input) pair one fixed sum whatever the kernel or grouping (the
        prompt contract, ``portable_block_fma``), and products of fewer inputs another summation
        order (``row_dot``); so the last row runs as four copies where the full pass had four or
        more rows, and alone otherwise.
        """
        import numpy as np

        from mcp_gemma.native import add_rms_norm, gelu_times, gqa_attention, qk_norm_rope, rms_norm

        eps, threads = self.eps, self.w.threads
        n = int(ids.shape[0])
        start, end = self.pos, self.pos + n
        h = self.w.embed.gather(ids) * self.embed_scale  # [n, hidden]
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv
        nq = nh * hd
        final = len(self.w.layers) - 1
        for i, layer in enumerate(self.w.layers):
            qkv = layer.qkv.matmul(rms_norm(h, layer.norms[0], eps, threads), threads)
            cos, sin = self._rope[layer.sliding]
            # q and k heads normed and rotated: [H + KV, n, D]
            qk = qk_norm_rope(qkv, self._qk_norm[i], cos[start:end], sin[start:end], eps, threads)
            q = qk[:nh]
            self._k[i][:, start:end] = qk[nh:]
            self._v[i][:, start:end] = qkv[:, nq + nkv * hd :].reshape(n, nkv, hd).transpose(1, 0, 2)
            if i == final and rows == _NONE:
                break  # the keys and values are all that outlives the call
            # Rust for every row: prompt rows split across the pool, a decode step's one row on
            # the calling thread (0.02 ms against numpy's 0.06 ms at 100 keys, ~4% of a step).
            window = self.window if layer.sliding else None
            attn = gqa_attention(q, self._k[i], self._v[i], start, window, self.scale, threads)
            if i == final and rows == _LAST:
                copies = 4 if n >= 4 else 1  # the arithmetic the last row took in the full pass
                attn, h = np.repeat(attn[-1:], copies, axis=0), np.repeat(h[-1:], copies, axis=0)
            o = layer.o.matmul(np.ascontiguousarray(attn), threads)
            h = add_rms_norm(h, o, layer.norms[1], eps, threads)
            gate_up = layer.gate_up.matmul(rms_norm(h, layer.norms[2], eps, threads), threads)
            act = gelu_times(gate_up, threads)
            h = add_rms_norm(h, layer.down.matmul(act, threads), layer.norms[3], eps, threads)
        self.pos = end
        return h


# The hidden-state rows ``Q8Decoder._layers`` returns.
_ALL, _LAST, _NONE = 0, 1, 2
