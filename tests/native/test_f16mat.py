"""``F16Matrix``: binary16 weights, float32 products, against numpy on the same rounded weights."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_gemma._rust_core import F16Matrix


def halve(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w).astype(np.float16).view(np.uint16)


# the last: more inputs than one sweep of the kernel takes (48), a part-filled last panel, odd columns
@pytest.mark.parametrize(
    ("m", "rows", "cols"), [(1, 384, 384), (3, 1152, 384), (7, 13, 45), (16, 384, 1536), (100, 1000, 389)]
)
def test_matmul_is_numpy_on_the_rounded_weights(m: int, rows: int, cols: int) -> None:
    rng = np.random.default_rng(m)
    w = rng.standard_normal((rows, cols), dtype=np.float32) * 0.05
    x = rng.standard_normal((m, cols), dtype=np.float32)
    mat = F16Matrix.from_bits(halve(w))
    # stored in panels of 16 rows, the last one zero-padded
    assert mat.shape == (rows, cols) and mat.nbytes == -(-rows // 16) * 16 * cols * 2
    want = x.astype(np.float64) @ w.astype(np.float16).astype(np.float64).T
    for threads in (1, None, 2):
        got = mat.matmul(x, threads)
        assert got.shape == (m, rows) and got.dtype == np.float32
        # f32 sums in another order than float64's: a few ulps of the largest term
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    np.testing.assert_array_equal(mat.matmul(x, 1), mat.matmul(x, 2))


def test_bad_input_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="bits must have dtype uint16"):
        F16Matrix.from_bits(np.zeros((2, 2), dtype=np.float16))
    with pytest.raises(ValueError, match="row 1, column 0 is not finite"):
        F16Matrix.from_bits(halve(np.array([[1.0, 2.0], [np.inf, 0.0]], dtype=np.float32)))
    mat = F16Matrix.from_bits(halve(np.ones((2, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="x has 3 columns but the matrix has 4"):
        mat.matmul(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        mat.matmul(np.ones((4, 2), dtype=np.float32).T)
    assert mat.matmul(np.zeros((0, 4), dtype=np.float32)).shape == (0, 2)
