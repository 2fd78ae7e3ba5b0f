"""HnswIndex: recall against exact top-k, ids, tombstones, errors, GIL release."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from mcp_gemma import _rust_core as rc
from tests.native.gil import assert_call_releases_the_gil


def _clustered(n: int, d: int, seed: int, spread: float = 0.6) -> NDArray[np.float32]:
    """Unit vectors around n/100 centres (the shape of sentence embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 100, 1), d), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _recall(found: NDArray[np.uint64], want: NDArray[np.intp], ids: NDArray[np.uint64]) -> float:
    hits = sum(len(set(f.tolist()) & set(ids[w].tolist())) for f, w in zip(found, want, strict=True))
    return hits / want.size


def _exact(data: NDArray[np.float32], queries: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    return np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :k]


def test_recall_at_10_on_20k_clustered_vectors() -> None:
    x = _clustered(20_200, 128, seed=0)
    data, queries = x[:20_000], x[20_000:]
    ids = np.arange(20_000, dtype=np.uint64) * 7 + 3
    index = rc.HnswIndex(128, "cosine")
    index.add(ids[:5_000], data[:5_000])
    index.add(ids[5_000:], data[5_000:])
    assert len(index) == 20_000
    found, scores = index.search_batch(queries, 10, ef=64)
    assert found.shape == scores.shape == (200, 10)
    assert _recall(found, _exact(data, queries, 10), ids) >= 0.95
    # Scores are exact cosines of the returned rows, best first.
    rows = data[((found.astype(np.int64) - 3) // 7)]
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", rows, queries), rtol=0, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    single = index.search(queries[3], 10, ef=64)
    np.testing.assert_array_equal(single[0], found[3])


def test_recall_at_10_on_uniform_random_inner_product() -> None:
    rng = np.random.default_rng(1)
    data = rng.standard_normal((5_000, 32), dtype=np.float32)
    queries = rng.standard_normal((100, 32), dtype=np.float32)
    ids = np.arange(5_000, dtype=np.uint64)
    index = rc.HnswIndex(32, "ip", m=16, ef_construction=200)
    index.add(ids, data)
    found, _ = index.search_batch(queries, 10, ef=200)
    assert _recall(found, _exact(data, queries, 10), ids) >= 0.9


def test_larger_ef_does_not_lower_recall() -> None:
    x = _clustered(3_100, 64, seed=2, spread=1.5)
    data, queries = x[:3_000], x[3_000:]
    ids = np.arange(3_000, dtype=np.uint64)
    index = rc.HnswIndex(64, "cosine", m=8, ef_construction=64)
    index.add(ids, data)
    want = _exact(data, queries, 10)
    low = _recall(index.search_batch(queries, 10, ef=10)[0], want, ids)
    high = _recall(index.search_batch(queries, 10, ef=400)[0], want, ids)
    assert high >= low
    assert high >= 0.98


def test_large_ids_round_trip() -> None:
    data = _clustered(300, 16, seed=3)
    ids = np.array([2**64 - 1 - i for i in range(300)], dtype=np.uint64)
    index = rc.HnswIndex(16)
    index.add(ids, data)
    for i in (0, 150, 299):
        got, scores = index.search(data[i], 1)
        assert got.dtype == np.uint64
        assert int(got[0]) == 2**64 - 1 - i
        assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert (2**64 - 1) in index
    assert index.contains(2**64 - 300)
    assert not index.contains(5)
    assert not index.contains(-1)
    assert "x" not in index  # type: ignore[operator]


def test_remove_and_replace_leave_tombstones_that_are_never_returned() -> None:
    data = _clustered(1_000, 24, seed=4)
    ids = np.arange(1_000, dtype=np.uint64)
    index = rc.HnswIndex(24, "cosine", m=8)
    index.add(ids, data)
    assert index.remove(ids[:990]) == 990
    assert index.remove(np.array([1, 2, 12345], dtype=np.uint64)) == 0
    assert len(index) == 10
    assert index.tombstones == 990
    assert 5 not in index
    got, _ = index.search(data[0], 10)
    assert sorted(got.tolist()) == list(range(990, 1_000))
    # Replacing 995 with row 0: the old row is a tombstone, the new one is found.
    index.add(np.array([995], dtype=np.uint64), data[:1])
    assert len(index) == 10
    assert index.tombstones == 991
    got, scores = index.search(data[0], 1)
    assert int(got[0]) == 995
    assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_empty_index_and_k_larger_than_len() -> None:
    index = rc.HnswIndex(4, "ip")
    got, scores = index.search(np.ones(4, dtype=np.float32), 3)
    assert got.size == scores.size == 0
    index.add(np.array([9, 8], dtype=np.uint64), np.eye(2, 4, dtype=np.float32))
    got, _ = index.search_batch(np.ones((3, 4), dtype=np.float32), 5)
    assert got.shape == (3, 2)
    assert index.nbytes > 0
    assert repr(index).startswith("HnswIndex(dim=4, metric='ip', m=16")
    assert (index.dim, index.metric, index.m, index.ef_construction) == (4, "ip", 16, 200)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim must be >= 1"),
        ({"dim": 4, "metric": "l2"}, "metric must be"),
        ({"dim": 4, "m": 1}, "m must be between"),
        ({"dim": 4, "m": 10_000}, "m must be between"),
        ({"dim": 4, "ef_construction": 0}, "ef_construction must be >= 1"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rc.HnswIndex(**kwargs)  # type: ignore[arg-type]


def test_bad_input_raises_value_error_and_changes_nothing() -> None:
    index = rc.HnswIndex(4, "cosine")
    good = np.eye(2, 4, dtype=np.float32)
    ids = np.array([1, 2], dtype=np.uint64)
    with pytest.raises(ValueError, match="dtype float32"):
        index.add(ids, good.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        index.add(ids, np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="zero norm"):
        index.add(ids, np.zeros((2, 4), dtype=np.float32))
    nan = good.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        index.add(ids, nan)
    with pytest.raises(ValueError, match="uint64"):
        index.add(ids.astype(np.int64), good)
    with pytest.raises(ValueError, match="C-contiguous"):
        index.add(ids, np.ones((4, 2), dtype=np.float32).T)
    assert len(index) == 0
    index.add(ids, good)
    q = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="ef must be >= 1"):
        index.search(q, 1, ef=0)
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(3, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="columns"):
        index.search_batch(np.ones((2, 3), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="zero norm"):
        index.search(np.zeros(4, dtype=np.float32), 1)
    assert len(index) == 2


def test_python_thread_progresses_during_add() -> None:
    data = _clustered(20_000, 64, seed=5)
    index = rc.HnswIndex(64, ef_construction=100)
    assert_call_releases_the_gil(lambda: index.add(np.arange(20_000, dtype=np.uint64), data))
    assert len(index) == 20_000
