"""The fused layer kernels of the int8 decoder give the bits of the numpy expressions they replace
(the norms and the rotation), or values within a few ulp of the exact ones (gelu)."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.native import add_rms_norm, gelu_times, qk_norm_rope, rms_norm

EPS = 1e-6


def numpy_rms(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The decoder's former numpy RMS norm, verbatim."""
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    return x / np.sqrt(var + EPS) * scale


def numpy_rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return x * cos + np.concatenate((x[..., half:], x[..., :half]), axis=-1) * sin


def _rows(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Magnitudes spread over decades, as residual streams are.
    return (rng.standard_normal((n, dim)) * np.exp(rng.uniform(-3, 5, (n, 1)))).astype(np.float32)


@pytest.mark.parametrize(("n", "dim"), [(1, 640), (7, 640), (108, 640), (3, 100), (2, 5), (4, 1152)])
def test_rms_norm_is_bitwise_numpy(n: int, dim: int) -> None:
    x = _rows(n, dim, dim + n)
    scale = (1.0 + np.random.default_rng(1).standard_normal(dim) * 0.3).astype(np.float32)
    h = _rows(n, dim, 99)
    for threads in (None, 1, 2):  # 108 rows split across the pool: the same bits
        got = rms_norm(x, scale, EPS, threads)
        assert got.shape == (n, dim) and got.dtype == np.float32
        np.testing.assert_array_equal(got, numpy_rms(x, scale))
        np.testing.assert_array_equal(add_rms_norm(h, x, scale, EPS, threads), h + numpy_rms(x, scale))


@pytest.mark.parametrize("n", [1, 5, 108])
def test_qk_norm_rope_is_bitwise_numpy(n: int) -> None:
    heads, kv, hd, start = 4, 1, 256, 37
    rng = np.random.default_rng(n)
    qkv = _rows(n, (heads + 2 * kv) * hd, n)
    norm = np.concatenate(
        [np.tile(rng.standard_normal(hd), (heads, 1)), np.tile(rng.standard_normal(hd), (kv, 1))]
    )
    norm = (1.0 + norm).astype(np.float32)
    angles = np.outer(np.arange(start + n, dtype=np.float64), 1.0 / 10000 ** (np.arange(0, hd, 2) / hd))
    emb = np.concatenate((angles, angles), axis=-1)
    sin = np.sin(emb)
    sin[:, : hd // 2] *= -1.0
    cos32, sin32 = np.cos(emb).astype(np.float32), sin.astype(np.float32)
    qk = qkv[:, : (heads + kv) * hd].reshape(n, heads + kv, hd).transpose(1, 0, 2)
    want = numpy_rotate(numpy_rms(qk, norm[:, None, :]), cos32[start:], sin32[start:])
    for threads in (None, 1, 2):  # 108 tokens split across the pool: the same bits
        got = qk_norm_rope(qkv, norm, cos32[start:], sin32[start:], EPS, threads)
        assert got.shape == (heads + kv, n, hd)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("n", "half", "threads"), [(1, 2048, None), (108, 2048, 2), (3, 13, 1)])
def test_gelu_times_is_the_exact_value_within_a_few_ulp(n: int, half: int, threads: int | None) -> None:
    rng = np.random.default_rng(n)
    gate_up = (rng.standard_normal((n, 2 * half)) * 3).astype(np.float32)
    got = gelu_times(gate_up, threads)
    assert got.shape == (n, half) and got.dtype == np.float32
    g, u = gate_up[:, :half].astype(np.float64), gate_up[:, half:].astype(np.float64)
    exact = g * 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g**3))) * u
    # numpy's own float32 tanh form lands as far from the exact value: a few ulp of |g · u|.
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-6 * float(np.abs(g * u).max()))
    np.testing.assert_array_equal(gelu_times(gate_up, 1), got)  # one thread or several: same bits


def test_bad_shapes_are_clear_errors() -> None:
    x = np.ones((2, 8), np.float32)
    with pytest.raises(InvalidInputError, match="columns"):
        rms_norm(x, np.ones(4, np.float32), EPS)
    with pytest.raises(InvalidInputError, match="shape"):
        add_rms_norm(np.ones((3, 8), np.float32), x, np.ones(8, np.float32), EPS)
    with pytest.raises(InvalidInputError, match="dtype"):
        rms_norm(x.astype(np.float64), np.ones(8, np.float32), EPS)
    with pytest.raises(InvalidInputError, match="cos and sin"):
        qk_norm_rope(
            x, np.ones((1, 4), np.float32), np.ones((1, 4), np.float32), np.ones((2, 4), np.float32), EPS
        )
    with pytest.raises(InvalidInputError, match="even"):
        gelu_times(np.ones((2, 7), np.float32))
    with pytest.raises(InvalidInputError, match="dtype"):
        gelu_times(np.ones((2, 8), np.float64))
    with pytest.raises(InvalidInputError, match="even"):
        qk_norm_rope(
            x, np.ones((1, 3), np.float32), np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), EPS
        )
