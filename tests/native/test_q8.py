"""``Q8Matrix``: block-int8 products against numpy, round trips, and clear errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from mcp_gemma._rust_core import Q8Matrix


@pytest.fixture
def weights() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((200, 96), dtype=np.float32)


@pytest.mark.parametrize("m", [1, 2, 5])
def test_matmul_matches_numpy_within_quantisation_error(weights: np.ndarray, m: int) -> None:
    q = Q8Matrix.quantize(weights)
    x = np.random.default_rng(m).standard_normal((m, 96), dtype=np.float32)
    got = q.matmul(x)
    want = x @ weights.T
    assert got.shape == (m, 200)
    assert got.dtype == np.float32
    # Each side is rounded to 1/254 of its block's range: relative error well under 2%.
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9999


def test_large_matrices_split_across_threads_give_the_same_rows(weights: np.ndarray) -> None:
    big = np.tile(weights, (40, 1))  # 8000 rows: parallel path
    q = Q8Matrix.quantize(big)
    x = np.random.default_rng(3).standard_normal((1, 96), dtype=np.float32)
    out = q.matmul(x)[0]
    np.testing.assert_array_equal(out[:200], out[200:400])
    np.testing.assert_allclose(out[:200], Q8Matrix.quantize(weights).matmul(x)[0], rtol=0, atol=0)


def thread_names(expect: Iterable[str] = (), limit_s: float = 20.0) -> set[str]:
    """Names of this process's OS threads (rayon's workers are not Python threads).

    A new worker names itself once it first runs, which on a loaded machine can be after the work
    it was built for is done: with ``expect``, wait (up to ``limit_s``) until those names appear.
    """
    deadline = time.monotonic() + limit_s
    while True:
        names = set()
        for task in Path("/proc/self/task").iterdir():
            try:
                names.add((task / "comm").read_text().strip())
            except FileNotFoundError:  # a thread that ended while we looked
                continue
        if set(expect) <= names or time.monotonic() > deadline:
            return names
        time.sleep(0.05)


def test_a_sized_pool_gives_the_same_products_and_uses_that_many_threads(weights: np.ndarray) -> None:
    big = np.tile(weights, (40, 1))
    q = Q8Matrix.quantize(big)
    x = np.random.default_rng(4).standard_normal((3, 96), dtype=np.float32)
    shared = q.matmul(x)
    for threads in (1, 3):
        np.testing.assert_array_equal(q.matmul(x, threads=threads), shared)
    expected = {"mcp-gemma-3-0", "mcp-gemma-3-1", "mcp-gemma-3-2"}
    comms = thread_names(expected)
    assert expected <= comms
    assert "mcp-gemma-3-3" not in comms
    with pytest.raises(ValueError, match="threads must lie in"):
        q.matmul(x, threads=0)


def test_parts_round_trip_and_gather(weights: np.ndarray) -> None:
    q = Q8Matrix.quantize(weights)
    codes, scales = q.codes(), q.scales()
    assert codes.dtype == np.int8 and codes.shape == (200, 96)
    assert scales.dtype == np.float32 and scales.shape == (200, 3)
    back = Q8Matrix.from_parts(codes, scales)
    assert back.shape == (200, 96)
    rows = back.gather(np.array([0, 7, 199], dtype=np.int64))
    np.testing.assert_allclose(rows, codes[[0, 7, 199]] * np.repeat(scales[[0, 7, 199]], 32, axis=1))
    step = np.repeat(scales[[0, 7, 199]], 32, axis=1)
    assert (np.abs(rows - weights[[0, 7, 199]]) <= step / 2 + 1e-7).all()
    assert q.nbytes == 200 * 96 + 200 * 3 * 4


def test_bad_input_gets_a_clear_error(weights: np.ndarray) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        Q8Matrix.quantize(weights[:, :90].copy())
    with pytest.raises(ValueError, match="float32"):
        Q8Matrix.quantize(weights.astype(np.float64))
    bad = weights.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="row 3, column 4"):
        Q8Matrix.quantize(bad)
    q = Q8Matrix.quantize(weights)
    with pytest.raises(ValueError, match="96"):
        q.matmul(np.zeros((1, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="not finite"):
        q.matmul(np.full((1, 96), np.inf, dtype=np.float32))
    with pytest.raises(ValueError, match="out of range"):
        q.gather(np.array([200], dtype=np.int64))
    with pytest.raises(ValueError, match="scales must have shape"):
        Q8Matrix.from_parts(q.codes(), q.scales()[:, :2].copy())
    codes = q.codes()
    codes[0, 0] = -128
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        Q8Matrix.from_parts(codes, q.scales())


@pytest.mark.parametrize("m", [1, 4, 5])
def test_a_stacked_product_is_the_blocks_products_side_by_side(weights: np.ndarray, m: int) -> None:
    # The output head is held as blocks of rows; one stacked pass must give each block's bits.
    from mcp_gemma import native

    blocks = [
        native.Q8Matrix.quantize(np.ascontiguousarray(weights[a:b]))
        for a, b in ((0, 37), (37, 38), (38, 200))
    ]
    big = native.Q8Matrix.quantize(np.tile(weights, (40, 1)))  # 8000 rows: split across the pool
    x = np.random.default_rng(10 + m).standard_normal((m, 96), dtype=np.float32)
    for mats in (blocks, [*blocks, big]):
        got = native.q8_matmul_stacked(mats, x, 2)
        want = np.concatenate([b.matmul(x, 2) for b in mats], axis=1)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_stacked_product_refuses_what_it_cannot_stack(weights: np.ndarray) -> None:
    from mcp_gemma import native
    from mcp_gemma.errors import InvalidInputError

    q = native.Q8Matrix.quantize(weights)
    narrow = native.Q8Matrix.quantize(weights[:, :64].copy())
    x = np.ones((1, 96), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="at least one matrix"):
        native.q8_matmul_stacked([], x)
    with pytest.raises(InvalidInputError, match="one column count"):
        native.q8_matmul_stacked([q, narrow], x)
    with pytest.raises(InvalidInputError, match="96"):
        native.q8_matmul_stacked([q], np.ones((1, 64), dtype=np.float32))
