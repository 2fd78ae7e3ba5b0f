"""Bad input raises ValueError with a message that names the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mcp_gemma import _rust_core as rc

M = np.ones((10, 4), dtype=np.float32)
Q = np.ones(4, dtype=np.float32)


@pytest.mark.parametrize(
    ("matrix", "query", "k", "message"),
    [
        (M.astype(np.float64), Q, 3, "dtype float32"),
        (M, Q.astype(np.float16), 3, "dtype float32"),
        (np.ones((10, 8), dtype=np.float32)[:, ::2], Q, 3, "C-contiguous"),
        (M[0], Q, 3, "2-dimensional"),
        (M, M, 3, "1-dimensional"),
        (M, np.ones(5, dtype=np.float32), 3, "dimensions"),
        (M, Q, 0, "k must be >= 1"),
        (M, Q, -2, "k must be >= 1"),
        (M, np.array([1, np.nan, 0, 0], dtype=np.float32), 3, "non-finite"),
        (M.tolist(), Q, 3, "numpy.ndarray"),
    ],
)
def test_topk_rejects_bad_input(matrix: Any, query: Any, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rc.topk(matrix, query, k)


def test_topk_rejects_unknown_metric_and_zero_cosine_query() -> None:
    with pytest.raises(ValueError, match="metric"):
        rc.topk(M, Q, 1, "l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero norm"):
        rc.topk(M, np.zeros(4, dtype=np.float32), 1, "cosine")


def test_topk_batch_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="columns"):
        rc.topk_batch(M, np.ones((2, 3), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="2-dimensional"):
        rc.topk_batch(M, Q, 1)
    with pytest.raises(ValueError, match="non-finite"):
        rc.topk_batch(M, np.full((2, 4), np.inf, dtype=np.float32), 1)


def test_index_rejects_bad_input_and_stays_unchanged() -> None:
    index = rc.VectorIndex(4, "cosine")
    ids = np.arange(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="shape"):
        index.add(ids, np.ones((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dtype uint64"):
        index.add(ids.astype(np.int64), np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="zero norm"):
        index.add(ids, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        index.add(ids, np.full((2, 4), np.nan, dtype=np.float32))
    assert len(index) == 0
    index.add(ids, np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dim=4"):
        index.search(np.ones(3, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(Q, 0)
    with pytest.raises(ValueError, match="dtype uint64"):
        index.search(Q, 1, allow=np.array([1.0]))
    with pytest.raises(ValueError, match="dim=4"):
        index.search_batch(np.ones((2, 3), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        rc.VectorIndex(0)
    with pytest.raises(ValueError, match="rerank"):
        rc.VectorIndex(4, rerank=0)


def test_out_of_range_ids_are_value_errors() -> None:
    bm25 = rc.BM25Index()
    with pytest.raises(ValueError, match=r"id must be an int in \[0, 2\*\*64\)"):
        bm25.add(-1, "text")
    with pytest.raises(ValueError, match="ids must be"):
        bm25.add_many([2**64], ["text"])
    with pytest.raises(ValueError, match="texts must be"):
        bm25.add_many([1], "not a list")
    assert not bm25.remove(-5)
    assert -5 not in bm25
    index = rc.VectorIndex(2)
    assert index.get(-1) is None
    assert not index.contains(-1)
    with pytest.raises(ValueError, match="rankings must be"):
        rc.fuse_rrf([[-1]])
    with pytest.raises(ValueError, match="k must be >= 0"):
        rc.fuse_rrf([[1]], k=-1)
    with pytest.raises(ValueError, match="a must be"):
        rc.fuse_weighted([(1, "x")], [], 0.5)  # type: ignore[list-item]
