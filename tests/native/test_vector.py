"""topk / topk_batch / VectorIndex against a numpy reference."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Literal

import numpy as np
import pytest
from numpy.typing import NDArray

from mcp_gemma import _rust_core as rc

Metric = Literal["ip", "cosine"]


def _data(n: int = 3000, d: int = 48, seed: int = 0) -> NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def _reference(
    m: NDArray[np.float32], q: NDArray[np.float32], k: int, metric: str
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    scores = m @ q
    if metric == "cosine":
        norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
        scores = scores / norms
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_topk_matches_numpy(metric: Metric) -> None:
    m = _data()
    q = _data(1, seed=1)[0]
    idx, scores = rc.topk(m, q, 10, metric)
    ref_idx, ref_scores = _reference(m, q, 10, metric)
    assert idx.dtype == np.int64
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_topk_batch_matches_numpy(metric: Metric) -> None:
    m = _data(5000)
    qs = _data(17, seed=2)
    idx, scores = rc.topk_batch(m, qs, 7, metric)
    assert idx.shape == scores.shape == (17, 7)
    for i, q in enumerate(qs):
        ref_idx, ref_scores = _reference(m, q, 7, metric)
        np.testing.assert_array_equal(idx[i], ref_idx)
        np.testing.assert_allclose(scores[i], ref_scores, rtol=1e-4, atol=1e-5)


def test_k_is_clipped_to_rows() -> None:
    m = _data(5)
    idx, scores = rc.topk(m, m[0].copy(), 100)
    assert len(idx) == len(scores) == 5
    bidx, _ = rc.topk_batch(m, m[:2].copy(), 100)
    assert bidx.shape == (2, 5)


def test_large_matrix_uses_parallel_path_and_matches() -> None:
    m = _data(120_000, 32, seed=5)
    q = _data(1, 32, seed=6)[0]
    idx, _ = rc.topk(m, q, 25)
    ref_idx, _ = _reference(m, q, 25, "ip")
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_index_matches_numpy(metric: Metric) -> None:
    m = _data(2000)
    ids = np.arange(10_000, 12_000, dtype=np.uint64)
    index = rc.VectorIndex(48, metric)
    index.add(ids, m)
    assert len(index) == 2000
    assert index.dim == 48
    assert index.metric == metric
    q = _data(1, seed=3)[0]
    got_ids, got_scores = index.search(q, 10)
    ref_idx, ref_scores = _reference(m, q / np.linalg.norm(q) if metric == "cosine" else q, 10, metric)
    np.testing.assert_array_equal(got_ids, ids[ref_idx])
    np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-4, atol=1e-5)
    batch_ids, batch_scores = index.search_batch(np.stack([q, q]), 10)
    assert batch_ids.shape == (2, 10)
    np.testing.assert_array_equal(batch_ids[1], got_ids)
    np.testing.assert_allclose(batch_scores[0], got_scores, rtol=1e-5)


def test_cosine_index_stores_normalised_rows() -> None:
    index = rc.VectorIndex(3)
    index.add(np.array([7], dtype=np.uint64), np.array([[3.0, 0.0, 4.0]], dtype=np.float32))
    row = index.get(7)
    assert row is not None
    np.testing.assert_allclose(row, [0.6, 0.0, 0.8], rtol=1e-6)
    assert index.get(8) is None
    assert index.contains(7)
    assert 7 in index
    assert index.nbytes == 3 * 4 + 8


def test_allow_list_is_applied_inside_the_scan() -> None:
    m = _data(1000)
    ids = np.arange(1000, dtype=np.uint64)
    index = rc.VectorIndex(48, "ip")
    index.add(ids, m)
    q = _data(1, seed=4)[0]
    allow = np.array([5, 17, 900, 999, 123456], dtype=np.uint64)
    got, scores = index.search(q, 3, allow=allow)
    sub = np.array([5, 17, 900, 999])
    ref = sub[np.argsort(-(m[sub] @ q), kind="stable")[:3]]
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_allclose(scores, m[ref] @ q, rtol=1e-5)
    empty_ids, empty_scores = index.search(q, 3, allow=np.array([], dtype=np.uint64))
    assert len(empty_ids) == len(empty_scores) == 0


def test_upsert_and_remove() -> None:
    index = rc.VectorIndex(2, "ip")
    index.add(np.array([1, 2, 3], dtype=np.uint64), np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32))
    index.add(np.array([2], dtype=np.uint64), np.array([[5, 5]], dtype=np.float32))
    assert len(index) == 3
    assert index.remove(np.array([1, 42], dtype=np.uint64)) == 1
    assert len(index) == 2
    assert sorted(index.ids().tolist()) == [2, 3]
    got, scores = index.search(np.array([1, 1], dtype=np.float32), 5)
    assert got.tolist() == [2, 3]
    assert scores.tolist() == [10.0, 2.0]


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_quantized_index_keeps_recall(metric: Metric) -> None:
    rng = np.random.default_rng(9)
    centres = rng.standard_normal((50, 96), dtype=np.float32)
    m = centres[rng.integers(0, 50, 6000)] + 0.6 * rng.standard_normal((6000, 96), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    ids = np.arange(6000, dtype=np.uint64)
    exact = rc.VectorIndex(96, metric)
    exact.add(ids, m)
    quant = rc.VectorIndex(96, metric, quantize=True, rerank=4)
    quant.add(ids, m)
    assert quant.quantized
    assert quant.nbytes > exact.nbytes
    hits = 0
    for q in m[:40]:
        want = set(exact.search(q, 10)[0].tolist())
        hits += len(want & set(quant.search(q, 10)[0].tolist()))
    assert hits / 400 >= 0.99
    quant.set_quantized(False)
    assert not quant.quantized


_PORTABLE_CHECK = """
import numpy as np
from mcp_gemma import _rust_core as rc
assert rc.simd_level() in {"scalar", "neon"}, rc.simd_level()
rng = np.random.default_rng(0)
m = rng.standard_normal((3000, 37), dtype=np.float32)
qs = rng.standard_normal((5, 37), dtype=np.float32)
ref = np.argsort(-(qs @ m.T), axis=1, kind="stable")[:, :9]
np.testing.assert_array_equal(rc.topk(m, qs[0], 9)[0], ref[0])
np.testing.assert_array_equal(rc.topk_batch(m, qs, 9)[0], ref)
index = rc.VectorIndex(37, "ip", quantize=True, rerank=8)
index.add(np.arange(3000, dtype=np.uint64), m)
assert len(set(index.search(qs[0], 9)[0].tolist()) & set(ref[0].tolist())) >= 8
"""


def _run_python(code: str, env: dict[str, str]) -> str:
    """``code`` run by this interpreter in a fresh process with ``env``; it must exit 0. Its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_portable_kernels_match_numpy() -> None:
    # MCP_GEMMA_FORCE_SCALAR makes the dispatcher skip AVX2, as on CPUs without it.
    _run_python(_PORTABLE_CHECK, {**os.environ, "MCP_GEMMA_FORCE_SCALAR": "1"})


def test_snapshot_lists_every_live_row_once() -> None:
    index = rc.VectorIndex(3, "cosine")
    index.add(
        np.array([5, 6, 7], dtype=np.uint64), np.array([[2, 0, 0], [0, 3, 0], [0, 0, 4]], dtype=np.float32)
    )
    index.remove(np.array([6], dtype=np.uint64))
    ids, rows = index.snapshot()
    assert ids.dtype == np.uint64 and rows.dtype == np.float32 and rows.shape == (2, 3)
    assert dict(zip(ids.tolist(), rows.tolist(), strict=True)) == {5: [1, 0, 0], 7: [0, 0, 1]}
    empty_ids, empty_rows = rc.VectorIndex(4).snapshot()
    assert empty_ids.shape == (0,) and empty_rows.shape == (0, 4)


_INT8_FIRST_PASS = """
import hashlib
import numpy as np
from mcp_gemma import _rust_core as rc
rng = np.random.default_rng(3)
digest = hashlib.sha256()
for dim in (37, 64, 384):
    m = rng.standard_normal((5003, dim), dtype=np.float32)
    qs = rng.standard_normal((20, dim), dtype=np.float32)
    index = rc.VectorIndex(dim, "ip", quantize=True, rerank=1)  # the hits are the int8 pass's picks
    index.add(np.arange(5003, dtype=np.uint64), m)
    allow = np.arange(0, 5003, 3, dtype=np.uint64)
    for q in qs:
        for ids, scores in (index.search(q, 10), index.search(q, 10, allow)):
            digest.update(ids.tobytes())
            digest.update(scores.tobytes())
print(rc.q8_kernel_level(), digest.hexdigest())
"""


def test_int8_scan_picks_the_same_rows_on_every_kernel() -> None:
    # The int8 dot products are exact integers on every kernel (AVX-512 VNNI where the CPU has it,
    # AVX2 with MCP_GEMMA_NO_AVX512), so the first pass keeps the same rows, whole scan or filtered.
    outputs = []
    switches = ("MCP_GEMMA_NO_AVX512", "MCP_GEMMA_FORCE_SCALAR")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    for extra in ({}, {"MCP_GEMMA_NO_AVX512": "1"}):
        outputs.append(_run_python(_INT8_FIRST_PASS, {**env, **extra}).split())
    (level, first), (other, second) = outputs
    assert other in {"avx2", "portable"} and level in {"avx512_vnni", other}
    assert first == second
