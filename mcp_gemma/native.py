"""Typed facade over the Rust core; the only module that imports ``mcp_gemma._rust_core``.

Functions and classes are re-exported unchanged, except that bad input (``ValueError``) becomes
:class:`~mcp_gemma.errors.InvalidInputError` and internal failures (``RustCoreError``) become
:class:`~mcp_gemma.errors.McpGemmaError`, so services can let them propagate to the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from mcp_gemma import _rust_core
from mcp_gemma._rust_core import BM25Index, HnswIndex, RustCoreError, TtlCache, VectorIndex
from mcp_gemma.errors import InvalidInputError, McpGemmaError

__all__ = [
    "BM25Index",
    "HnswIndex",
    "Metric",
    "RustCoreError",
    "TtlCache",
    "VectorIndex",
    "auto_on",
    "build_profile",
    "chunk_text",
    "fuse_rrf",
    "fuse_weighted",
    "native_errors",
    "rust_core_version",
    "simd_level",
    "tokenize",
    "topk",
    "topk_batch",
]

Metric = Literal["ip", "cosine"]
T = TypeVar("T")

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
    """Re-raise Rust-core errors as domain errors (wrap calls on ``VectorIndex`` & co. with this)."""
    try:
        yield
    except RustCoreError as exc:
        raise McpGemmaError(f"internal error in the search core: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc


def _call(fn: Callable[[], T]) -> T:
    with native_errors():
        return fn()


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


def tokenize(text: str, analyzer: Literal["plain", "english"] = "plain") -> list[str]:
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
