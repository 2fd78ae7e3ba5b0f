"""The BERT layer kernels of the numpy embedder (GELU, residual + layer norm, packed attention) agree
with float64 references of the numpy expressions they replace, and refuse bad input clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.native import add_layer_norm, bert_attention, bias_gelu


def _rows(n: int, dim: int, seed: int, spread: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, dim)) * spread).astype(np.float32)


def test_bias_gelu_is_exact_gelu_in_place() -> None:
    x = _rows(7, 1536, 1)
    x[0, :4] = [0.0, -40.0, 40.0, -1e-30]
    bias = _rows(1, 1536, 2, 0.1)[0]
    v = x.astype(np.float64) + bias
    erf = np.vectorize(math.erf)(v / math.sqrt(2.0))
    want = 0.5 * v * (1.0 + erf)
    got = x.copy()
    assert bias_gelu(got, bias) is None
    # erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) times |x| / 2 where the tail is non-zero
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=5e-7)
    assert got[0, 2] == pytest.approx(40.0 + bias[2]) and got[0, 1] == 0.0


def test_big_inputs_split_over_threads_give_the_same_bits() -> None:
    # 64 rows of 1536 pass the parallel threshold (65,536 values); row by row stays on one thread
    x, bias = _rows(64, 1536, 3), _rows(1, 1536, 4, 0.1)[0]
    whole = x.copy()
    bias_gelu(whole, bias)
    for row in x:
        bias_gelu(row[None, :], bias)
    np.testing.assert_array_equal(whole, x)


@pytest.mark.parametrize(("n", "dim"), [(1, 384), (50, 384), (200, 384), (3, 37)])
def test_add_layer_norm_matches_the_reference(n: int, dim: int) -> None:
    x, res = _rows(n, dim, n), _rows(n, dim, n + 1)
    bias, weight, shift = (_rows(1, dim, s, 0.5)[0] for s in (5, 6, 7))
    v = x.astype(np.float64) + bias + res
    centred = v - v.mean(axis=-1, keepdims=True)
    want = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-12) * weight + shift
    got = x.copy()
    add_layer_norm(got, bias, res, weight, shift, 1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


def _attention_reference(qkv: np.ndarray, lengths: list[int], heads: int) -> np.ndarray:
    hidden = qkv.shape[1] // 3
    hd = hidden // heads
    out = np.zeros((qkv.shape[0], hidden))
    start = 0
    for n in lengths:
        part = qkv[start : start + n].astype(np.float64)
        for h in range(heads):
            q, k, v = (part[:, i * hidden + h * hd : i * hidden + (h + 1) * hd] for i in range(3))
            s = q @ k.T / math.sqrt(hd)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[start : start + n, h * hd : (h + 1) * hd] = (p / p.sum(axis=1, keepdims=True)) @ v
        start += n
    return out


@pytest.mark.parametrize(
    ("lengths", "heads", "hidden"),
    [([1], 12, 384), ([9, 1, 30], 12, 384), ([45] * 24, 12, 384), ([5, 3], 3, 30)],
)
def test_attention_keeps_each_text_to_itself(lengths: list[int], heads: int, hidden: int) -> None:
    qkv = _rows(sum(lengths), 3 * hidden, sum(lengths), 1.5)
    got = bert_attention(qkv, lengths, heads)
    assert got.shape == (sum(lengths), hidden) and got.dtype == np.float32
    np.testing.assert_allclose(got, _attention_reference(qkv, lengths, heads), rtol=1e-5, atol=5e-6)


def test_bad_input_is_refused_with_a_clear_error() -> None:
    qkv = _rows(4, 90, 8)
    with pytest.raises(InvalidInputError, match="lengths add up to 5"):
        bert_attention(qkv, [2, 3], 3)
    with pytest.raises(InvalidInputError, match="columns"):
        bert_attention(qkv, [4], 7)
    with pytest.raises(InvalidInputError, match="lengths must be a sequence of non-negative ints"):
        bert_attention(qkv, [5, -1], 3)
    with pytest.raises(InvalidInputError, match="float32"):
        bias_gelu(np.zeros((2, 3)), np.zeros(3, np.float32))
    with pytest.raises(InvalidInputError, match="columns"):
        bias_gelu(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        bias_gelu(np.zeros((3, 4), np.float32).T, np.zeros(3, np.float32))
    frozen = np.zeros((2, 3), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(InvalidInputError, match="writable"):
        bias_gelu(frozen, np.zeros(3, np.float32))
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(InvalidInputError, match="shape"):
        add_layer_norm(
            x, np.zeros(3, np.float32), np.zeros((3, 3), np.float32), x[0].copy(), x[0].copy(), 1e-12
        )
