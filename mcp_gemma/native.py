"""Typed facade over the Rust core; the only module that imports ``mcp_gemma._rust_core``.

Every function and class of the core is reached through here, and this is the one place its errors
are mapped: bad input (``ValueError``) becomes :class:`~mcp_gemma.errors.InvalidInputError` and
internal failures (``RustCoreError``) become :class:`~mcp_gemma.errors.McpGemmaError`, so services
can let them propagate to the caller. The classes are thin wrappers holding the Rust object
(``_inner``); their methods add one Python call and nothing else.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeAlias, TypeVar

from mcp_gemma import _rust_core
from mcp_gemma._rust_core import RustCoreError
from mcp_gemma.errors import InvalidInputError, McpGemmaError

__all__ = [
    "Analyzer",
    "BM25Index",
    "BpeTokenizer",
    "F16Matrix",
    "HnswIndex",
    "Metric",
    "Q8Matrix",
    "RustCoreError",
    "TtlCache",
    "VectorIndex",
    "add_layer_norm",
    "add_rms_norm",
    "auto_on",
    "bert_attention",
    "bias_gelu",
    "build_profile",
    "chunk_text",
    "fuse_rrf",
    "fuse_weighted",
    "gelu_times",
    "gqa_attention",
    "native_errors",
    "q8_kernel_level",
    "q8_matmul_stacked",
    "qk_norm_rope",
    "rms_norm",
    "rust_core_version",
    "simd_level",
    "tokenize",
    "topk",
    "topk_batch",
]

Metric = Literal["ip", "cosine"]
Analyzer = Literal["plain", "english"]
T = TypeVar("T")
P = ParamSpec("P")
if TYPE_CHECKING:
    # numpy is needed for the annotations only: the package root imports this module for its version.
    import numpy as np
    from numpy.typing import NDArray

    U64: TypeAlias = NDArray[np.uint64]
    F32: TypeAlias = NDArray[np.float32]
    F64: TypeAlias = NDArray[np.float64]

rust_core_version: str = _rust_core.__version__
build_profile: str = _rust_core.build_profile


def auto_on(setting: bool | Literal["auto"], rows: int, threshold: int, on_now: bool) -> bool:
    """Whether a size-triggered feature (the int8 first pass, the HNSW graph) should be on at ``rows``.

    ``setting`` True / False forces it; "auto" turns it on at ``threshold`` rows and, once on,
    keeps it until the index falls below half of that (so it does not flap around the threshold).
    """
    if setting != "auto":
        return bool(setting)
    return rows >= threshold or (on_now and rows >= threshold // 2)


@contextmanager
def native_errors() -> Iterator[None]:
    """Re-raise Rust-core errors as domain errors around a block.

    The classes and functions here already map their errors; this is for code that still wraps
    its calls (a no-op around them) and for tests.
    """
    try:
        yield
    except RustCoreError as exc:
        raise McpGemmaError(f"internal error in the search core: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc


def _call(fn: Callable[[], T]) -> T:
    with native_errors():
        return fn()


def _mapped(fn: Callable[P, T]) -> Callable[P, T]:
    """The method or function, with Rust-core errors re-raised as domain errors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except RustCoreError as exc:
            raise McpGemmaError(f"internal error in the search core: {exc}") from exc
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc

    return wrapper


class VectorIndex:
    """Exact (optionally int8 first-pass) top-k over f32 rows keyed by u64 ids."""

    __slots__ = ("_inner",)

    @_mapped
    def __init__(self, dim: int, metric: Metric = "cosine", quantize: bool = False, rerank: int = 4) -> None:
        self._inner = _rust_core.VectorIndex(dim, metric, quantize, rerank)

    @_mapped
    def to_bytes(self) -> bytes:
        """The whole index (ids, rows, int8 codes) as versioned bytes."""
        return self._inner.to_bytes()

    @classmethod
    @_mapped
    def from_bytes(cls, data: bytes, start: int = 0, stop: int | None = None) -> VectorIndex:
        """The index saved in ``data[start:stop]`` by :meth:`to_bytes` (no copy); corrupt bytes raise
        :class:`~mcp_gemma.errors.InvalidInputError`."""
        out = cls.__new__(cls)
        out._inner = _rust_core.VectorIndex.from_bytes(data, start, stop)
        return out

    @_mapped
    def add(self, ids: U64, vectors: F32) -> None:
        """Insert or replace rows."""
        self._inner.add(ids, vectors)

    @_mapped
    def remove(self, ids: U64) -> int:
        """Drop rows; returns how many were there."""
        return self._inner.remove(ids)

    @_mapped
    def search(self, query: F32, k: int, allow: U64 | None = None) -> tuple[U64, F32]:
        """Top-k (ids, scores), best first, optionally only among ``allow``."""
        return self._inner.search(query, k, allow)

    @_mapped
    def search_batch(self, queries: F32, k: int) -> tuple[U64, F32]:
        """Top-k for each query row."""
        return self._inner.search_batch(queries, k)

    @_mapped
    def get(self, id: int) -> F32 | None:
        """The row stored under ``id``, if any."""
        return self._inner.get(id)

    @_mapped
    def snapshot(self) -> tuple[U64, F32]:
        """Every (id, row), as copies."""
        return self._inner.snapshot()

    def contains(self, id: int) -> bool:
        return self._inner.contains(id)

    def __contains__(self, id: int, /) -> bool:
        return id in self._inner

    def ids(self) -> U64:
        return self._inner.ids()

    @_mapped
    def set_quantized(self, on: bool) -> None:
        """Turn the int8 first pass on or off."""
        self._inner.set_quantized(on)

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def metric(self) -> Metric:
        return self._inner.metric

    @property
    def nbytes(self) -> int:
        return self._inner.nbytes

    @property
    def quantized(self) -> bool:
        return self._inner.quantized

    @property
    def rerank(self) -> int:
        return self._inner.rerank


class HnswIndex:
    """Approximate top-k: an HNSW graph on int8 codes, re-ranked on f32 rows."""

    __slots__ = ("_inner",)

    @_mapped
    def __init__(
        self,
        dim: int,
        metric: Metric = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        seed: int = 0,
        keep_rows: bool = True,
    ) -> None:
        self._inner = _rust_core.HnswIndex(dim, metric, m, ef_construction, seed, keep_rows)

    @_mapped
    def to_bytes(self) -> bytes:
        """The whole index (graph, codes, tombstones) as versioned bytes."""
        return self._inner.to_bytes()

    @classmethod
    @_mapped
    def from_bytes(cls, data: bytes, start: int = 0, stop: int | None = None) -> HnswIndex:
        """The index saved in ``data[start:stop]`` by :meth:`to_bytes` (no copy); corrupt bytes raise
        :class:`~mcp_gemma.errors.InvalidInputError`."""
        out = cls.__new__(cls)
        out._inner = _rust_core.HnswIndex.from_bytes(data, start, stop)
        return out

    @_mapped
    def add(self, ids: U64, vectors: F32) -> None:
        """Link rows into the graph (in parallel, GIL released)."""
        self._inner.add(ids, vectors)

    @_mapped
    def remove(self, ids: U64) -> int:
        """Tombstone rows; returns how many were live."""
        return self._inner.remove(ids)

    @_mapped
    def search(self, query: F32, k: int, ef: int = 64) -> tuple[U64, F32]:
        """Top-k (ids, exact scores), best first."""
        return self._inner.search(query, k, ef)

    @_mapped
    def candidates(self, query: F32, want: int, ef: int = 64) -> U64:
        """Up to ``want`` live ids, best first by the int8 score."""
        return self._inner.candidates(query, want, ef)

    @_mapped
    def search_batch(self, queries: F32, k: int, ef: int = 64) -> tuple[U64, F32]:
        """Top-k for each query row."""
        return self._inner.search_batch(queries, k, ef)

    def contains(self, id: int) -> bool:
        return self._inner.contains(id)

    def __contains__(self, id: int, /) -> bool:
        return id in self._inner

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def metric(self) -> Metric:
        return self._inner.metric

    @property
    def m(self) -> int:
        return self._inner.m

    @property
    def ef_construction(self) -> int:
        return self._inner.ef_construction

    @property
    def keep_rows(self) -> bool:
        return self._inner.keep_rows

    @property
    def nbytes(self) -> int:
        return self._inner.nbytes

    @property
    def tombstones(self) -> int:
        return self._inner.tombstones


class F16Matrix:
    """A binary16 weight matrix whose products run in float32 (GIL released)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _rust_core.F16Matrix) -> None:
        self._inner = inner

    @staticmethod
    @_mapped
    def from_bits(bits: NDArray[np.uint16]) -> F16Matrix:
        """From binary16 bit patterns (rows, cols): ``w.astype(np.float16).view(np.uint16)``."""
        return F16Matrix(_rust_core.F16Matrix.from_bits(bits))

    @_mapped
    def matmul(self, x: F32, threads: int | None = None) -> F32:
        """``x @ W.T`` for x of shape (n, cols)."""
        return self._inner.matmul(x, threads)

    @property
    def shape(self) -> tuple[int, int]:
        return self._inner.shape

    @property
    def nbytes(self) -> int:
        return self._inner.nbytes


class Q8Matrix:
    """A block-int8 (``Q8_0``) weight matrix with integer products (GIL released)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _rust_core.Q8Matrix) -> None:
        self._inner = inner

    @staticmethod
    @_mapped
    def quantize(weights: F32) -> Q8Matrix:
        """Quantise an f32 (rows, cols) matrix."""
        return Q8Matrix(_rust_core.Q8Matrix.quantize(weights))

    @staticmethod
    @_mapped
    def from_parts(codes: NDArray[np.int8], scales: F32) -> Q8Matrix:
        """Rebuild from stored codes and per-block scales."""
        return Q8Matrix(_rust_core.Q8Matrix.from_parts(codes, scales))

    @_mapped
    def matmul(self, x: F32, threads: int | None = None) -> F32:
        """``x @ W.T`` for x of shape (n, cols)."""
        return self._inner.matmul(x, threads)

    @_mapped
    def gather(self, ids: NDArray[np.int64]) -> F32:
        """The dequantised rows ``ids``."""
        return self._inner.gather(ids)

    def codes(self) -> NDArray[np.int8]:
        return self._inner.codes()

    def scales(self) -> F32:
        return self._inner.scales()

    @property
    def shape(self) -> tuple[int, int]:
        return self._inner.shape

    @property
    def nbytes(self) -> int:
        return self._inner.nbytes


class BpeTokenizer:
    """Gemma's tokenizer (byte-fallback BPE, ``tokenizers``' results) from its compact file."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _rust_core.BpeTokenizer) -> None:
        self._inner = inner

    @staticmethod
    @_mapped
    def build(
        vocab: Sequence[tuple[str, int]],
        merges: Sequence[tuple[str, str]],
        added: Sequence[tuple[int, str, bool]],
        unk_token: str | None,
        bos_token: str | None,
    ) -> BpeTokenizer:
        """From ``tokenizer.json``'s parts: (token, id) pairs, merges by rank, (id, text, special)."""
        return BpeTokenizer(_rust_core.BpeTokenizer.build(vocab, merges, added, unk_token, bos_token))

    @staticmethod
    @_mapped
    def load(path: str | os.PathLike[str]) -> BpeTokenizer:
        """Read a file written by :meth:`save` (a damaged or foreign one is InvalidInputError)."""
        return BpeTokenizer(_rust_core.BpeTokenizer.load(path))

    @_mapped
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the compact file atomically."""
        self._inner.save(path)

    @_mapped
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (the BOS first when ``add_special_tokens``)."""
        return self._inner.encode(text, add_special_tokens)

    @_mapped
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``."""
        return self._inner.decode(ids, skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._inner.token_to_id(token)

    def pieces(self) -> list[str | None]:
        """Each id's text as decoding writes it alone; None for special tokens."""
        return self._inner.pieces()

    @property
    def vocab_size(self) -> int:
        return self._inner.vocab_size


class BM25Index:
    """A BM25 keyword index over u64 ids."""

    __slots__ = ("_inner",)

    @_mapped
    def __init__(self, k1: float = 1.2, b: float = 0.75, analyzer: Analyzer = "plain") -> None:
        self._inner = _rust_core.BM25Index(k1, b, analyzer)

    @_mapped
    def to_bytes(self) -> bytes:
        """The whole index (postings and document lengths) as versioned bytes."""
        return self._inner.to_bytes()

    @classmethod
    @_mapped
    def from_bytes(cls, data: bytes, start: int = 0, stop: int | None = None) -> BM25Index:
        """The index saved in ``data[start:stop]`` by :meth:`to_bytes` (no copy); corrupt bytes raise
        :class:`~mcp_gemma.errors.InvalidInputError`."""
        out = cls.__new__(cls)
        out._inner = _rust_core.BM25Index.from_bytes(data, start, stop)
        return out

    @_mapped
    def add(self, id: int, text: str) -> None:
        self._inner.add(id, text)

    @_mapped
    def add_many(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self._inner.add_many(ids, texts)

    @_mapped
    def remove(self, id: int) -> bool:
        return self._inner.remove(id)

    @_mapped
    def search(self, query: str, k: int, allow: U64 | None = None) -> tuple[U64, F32]:
        """Top-k (ids, scores), best first, optionally only among ``allow``."""
        return self._inner.search(query, k, allow)

    @_mapped
    def scores(self, query: str, ids: U64) -> F32:
        """BM25 score of ``query`` for each of ``ids`` in order (0 where no term is shared)."""
        return self._inner.scores(query, ids)

    @_mapped
    def max_score(self, query: str) -> float:
        """Upper bound of any score for ``query`` (sum of idf * (k1 + 1) over its indexed terms)."""
        return self._inner.max_score(query)

    @_mapped
    def coverage(self, query: str, id: int) -> float:
        """Share of the query's IDF mass that document ``id`` holds."""
        return self._inner.coverage(query, id)

    @_mapped
    def coverage_many(self, query: str, ids: U64) -> F64:
        """Share of the query's IDF mass that each of ``ids`` holds, in order (0.0 for an id that is
        not indexed): each distinct query term weighs its BM25 IDF, a term no document has the
        highest IDF there is. The chunk-level keyword evidence of ``fusion="coverage"``."""
        return self._inner.coverage_many(query, ids)

    @property
    def analyzer(self) -> Analyzer:
        return "english" if self._inner.analyzer == "english" else "plain"

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, id: int, /) -> bool:
        return id in self._inner

    @property
    def vocab_size(self) -> int:
        return self._inner.vocab_size

    @property
    def k1(self) -> float:
        return self._inner.k1

    @property
    def b(self) -> float:
        return self._inner.b


class TtlCache:
    """A size- and time-bounded LRU cache of bytes by string key."""

    __slots__ = ("_inner",)

    @_mapped
    def __init__(self, capacity: int, ttl_seconds: float | None = None) -> None:
        self._inner = _rust_core.TtlCache(capacity, ttl_seconds)

    def get(self, key: str) -> bytes | None:
        return self._inner.get(key)

    @_mapped
    def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        self._inner.set(key, value, ttl_seconds)

    def delete(self, key: str) -> bool:
        return self._inner.delete(key)

    def clear(self) -> None:
        self._inner.clear()

    def keys(self) -> list[str]:
        return self._inner.keys()

    def stats(self) -> dict[str, int]:
        return self._inner.stats()

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, key: str, /) -> bool:
        return key in self._inner

    @property
    def capacity(self) -> int:
        return self._inner.capacity


@_mapped
def bias_gelu(x: F32, bias: F32) -> None:
    """``x = gelu(x + bias)`` in place: exact (erf) GELU, erf to ~1.5e-7, on rayon's threads when
    ``x`` is large (a BERT layer's feed-forward activation)."""
    _rust_core.bias_gelu(x, bias)


@_mapped
def add_layer_norm(x: F32, bias: F32, residual: F32, weight: F32, shift: F32, eps: float) -> None:
    """``x = layer_norm(x + bias + residual) * weight + shift`` in place, row by row (a BERT
    layer's residual add and norm after a product)."""
    _rust_core.add_layer_norm(x, bias, residual, weight, shift, eps)


@_mapped
def bert_attention(qkv: F32, lengths: Sequence[int], heads: int) -> F32:
    """Multi-head self-attention of packed texts, no padding: ``qkv`` is (tokens, 3·hidden), each row
    its q, k, v (heads in order within each); the texts are consecutive runs of ``lengths`` rows and
    attend to themselves only. Returns softmax(q·kᵀ/√head_dim)·v, (tokens, hidden)."""
    return _rust_core.bert_attention(qkv, lengths, heads)


@_mapped
def rms_norm(x: F32, scale: F32, eps: float, threads: int | None = None) -> F32:
    """``x / sqrt(mean(x², axis=-1) + eps) * scale`` for 2-d ``x``: numpy's arithmetic in Rust, the
    same bits as the numpy expression (GIL released; a prompt's rows split across ``threads``)."""
    return _rust_core.rms_norm(x, scale, eps, threads)


@_mapped
def add_rms_norm(h: F32, y: F32, scale: F32, eps: float, threads: int | None = None) -> F32:
    """``h + rms_norm(y, scale, eps)`` as a new array (a residual add after a norm), same bits as numpy."""
    return _rust_core.add_rms_norm(h, y, scale, eps, threads)


@_mapped
def qk_norm_rope(qkv: F32, scale: F32, cos: F32, sin: F32, eps: float, threads: int | None = None) -> F32:
    """The first ``len(scale)`` heads of each ``qkv`` row RMS-normed (row g of ``scale`` for head g)
    and rotated (``y · cos + swap_halves(y) · sin``): shape (heads, n, head_dim)."""
    return _rust_core.qk_norm_rope(qkv, scale, cos, sin, eps, threads)


@_mapped
def gelu_times(gate_up: F32, threads: int | None = None) -> F32:
    """``gelu(gate) · up`` (gelu's tanh form) for the rows of a fused ``gate | up`` projection
    (n, 2 · half): (n, half), in one pass over rows split across ``threads`` (GIL released).
    Within a few ulp of the exact value; not numpy's ``tanh`` bits."""
    return _rust_core.gelu_times(gate_up, threads)


@_mapped
def gqa_attention(
    q: F32, keys: F32, values: F32, start: int, window: int | None, scale: float, threads: int | None = None
) -> F32:
    """Causal grouped-query attention of ``q`` (heads, n, head_dim), the rows at positions
    ``start..start + n``, against the KV caches (kv_heads, capacity, head_dim): each query sees the
    last ``window`` keys up to itself (all for None), softmax(scale · q·kᵀ)·v, (n, heads · head_dim).
    f32 with a fixed summation order (GIL released; query-row blocks split across ``threads``);
    within ~1e-6 of numpy's BLAS products, not their bits."""
    return _rust_core.gqa_attention(q, keys, values, start, window, scale, threads)


@_mapped
def q8_matmul_stacked(mats: Sequence[Q8Matrix], x: F32, threads: int | None = None) -> F32:
    """``x @ vstack(mats).T`` for int8 matrices of one column count stacked by rows (a tall matrix
    held in blocks, as the output head is): (n, Σ rows), in one pass over the pool (GIL released)
    and one output array; each row's value is its own matrix's :meth:`Q8Matrix.matmul`'s, bit for
    bit."""
    return _rust_core.q8_matmul_stacked([m._inner for m in mats], x, threads)


def q8_kernel_level() -> str:
    """The kernels of the int8 products of several rows and of the int8 index scan here
    ("avx512_vnni", "avx2" or "portable")."""
    return _rust_core.q8_kernel_level()


def simd_level() -> str:
    """The instruction set the Rust kernels use here ("avx2", "neon" or "scalar")."""
    return _rust_core.simd_level()


def topk(
    matrix: NDArray[np.float32], query: NDArray[np.float32], k: int, metric: Metric = "ip"
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k rows of ``matrix`` for ``query``: (indices, scores), best first."""
    return _call(lambda: _rust_core.topk(matrix, query, k, metric))


def topk_batch(
    matrix: NDArray[np.float32], queries: NDArray[np.float32], k: int, metric: Metric = "ip"
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k for each row of ``queries``: arrays of shape (m, min(k, n))."""
    return _call(lambda: _rust_core.topk_batch(matrix, queries, k, metric))


def tokenize(text: str, analyzer: Analyzer = "plain") -> list[str]:
    """The terms BM25Index indexes for ``text`` under ``analyzer``."""
    return _call(lambda: _rust_core.tokenize(text, analyzer))


def fuse_rrf(
    rankings: Sequence[Sequence[int]], k: int = 60, limit: int | None = None
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several ranked id lists; best first."""
    return _call(lambda: _rust_core.fuse_rrf(rankings, k, limit))


def fuse_weighted(
    a: Sequence[tuple[int, float]], b: Sequence[tuple[int, float]], weight_b: float
) -> list[tuple[int, float]]:
    """Min-max normalised weighted sum of two scored lists; best first."""
    return _call(lambda: _rust_core.fuse_weighted(a, b, weight_b))


def chunk_text(
    text: str, max_chars: int, overlap: int = 0, mode: Literal["sentence", "chars"] = "sentence"
) -> list[tuple[int, int]]:
    """[start, end) str offsets of chunks of at most ``max_chars`` characters."""
    return _call(lambda: _rust_core.chunk_text(text, max_chars, overlap, mode))
