"""``native.gqa_attention`` (the int8 decoder's attention in Rust: prompt rows and decode steps)
against the decoder's former numpy attention and the exact value: not the bits of numpy's BLAS
products, within a stated tolerance of both; and its bad input is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.native import gqa_attention

SCALE = 256**-0.5  # Gemma 3 270M: query_pre_attn_scalar 256


def numpy_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, window: int | None
) -> np.ndarray:
    """The decoder's numpy attention before the Rust kernel, verbatim but for its names."""
    nh, n, hd = q.shape
    nkv = k.shape[0]
    group = nh // nkv
    end = start + n
    lo = max(0, start + 1 - window) if window else 0
    keys, values = k[:, lo:end], v[:, lo:end]
    qg = q.reshape(nkv, group * n, hd) * np.float32(SCALE)
    scores = np.matmul(qg, keys.transpose(0, 2, 1))
    if n > 1:
        q_pos = np.arange(start, end)[:, None]
        k_pos = np.arange(lo, end)[None, :]
        allowed = k_pos <= q_pos
        if window:
            allowed &= k_pos > q_pos - window
        mask = np.where(allowed, np.float32(0.0), np.float32(-np.inf))
        scores.reshape(nkv, group, n, -1)[...] += mask
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out: np.ndarray = np.matmul(scores, values).reshape(nh, n, hd).transpose(1, 0, 2).reshape(n, nh * hd)
    return out


def exact_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, window: int | None
) -> np.ndarray:
    """The definition in float64, one query row at a time."""
    nh, n, hd = q.shape
    group = nh // k.shape[0]
    out = np.zeros((n, nh * hd))
    for h in range(nh):
        for t in range(n):
            pos = start + t
            lo = max(0, pos + 1 - window) if window else 0
            keys = k[h // group, lo : pos + 1].astype(np.float64)
            s = keys @ (q[h, t].astype(np.float64) * float(np.float32(SCALE)))
            p = np.exp(s - s.max())
            out[t, h * hd : (h + 1) * hd] = (p / p.sum()) @ v[h // group, lo : pos + 1]
    return out


def _case(heads: int, kv: int, hd: int, n: int, capacity: int, seed: int) -> tuple[np.ndarray, ...]:
    """Rows shaped like the decoder's: q and k RMS-normed then scaled by per-channel norms (scores
    of a few units, some rows peaked), v of a few units."""
    rng = np.random.default_rng(seed)

    def normed(*shape: int) -> np.ndarray:
        x = rng.standard_normal(shape)
        x /= np.sqrt((x**2).mean(-1, keepdims=True))
        return x * (1.0 + rng.standard_normal(shape[-1]) * 0.5) * 2.0

    q = normed(heads, n, hd).astype(np.float32)
    k = normed(kv, capacity, hd).astype(np.float32)
    v = (rng.standard_normal((kv, capacity, hd)) * 2.0).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize(
    ("heads", "kv", "n", "start", "window"),
    [
        (4, 1, 108, 0, 512),  # a prompt of the packaged model, local layer (window longer than it)
        (4, 1, 108, 0, None),  # ... global layer
        (4, 1, 60, 40, 32),  # a later chunk, window shorter than the context
        (4, 2, 7, 0, None),  # several kv heads, a tile's remainder
        (4, 1, 1, 99, 512),  # a decode step
    ],
)
def test_attention_matches_numpy_and_the_exact_value(
    heads: int, kv: int, n: int, start: int, window: int | None
) -> None:
    q, k, v = _case(heads, kv, 256, n, 128, seed=n + start)
    got = gqa_attention(q, k, v, start, window, SCALE)
    assert got.shape == (n, heads * 256) and got.dtype == np.float32
    exact = exact_attention(q, k, v, start, window)
    former = numpy_attention(q, k, v, start, window)
    ours, theirs = float(np.abs(got - exact).max()), float(np.abs(former - exact).max())
    # f32 scores of a few units feed exp: errors of a few ulp of the scores show up as ~1e-6 of
    # the values (max |v| ~ 9 here); ours lie within numpy's own distance from the exact value.
    vmax = float(np.abs(v).max())
    assert ours <= 1.5e-6 * vmax, ours
    assert ours <= max(theirs, 3e-6), (ours, theirs)
    np.testing.assert_allclose(got, former, rtol=0, atol=4e-6 * vmax)
    for threads in (1, 2):  # one thread or several: the same bits
        np.testing.assert_array_equal(gqa_attention(q, k, v, start, window, SCALE, threads), got)


def test_bad_input_is_a_clear_error() -> None:
    q, k, v = _case(4, 1, 8, 3, 5, seed=0)
    with pytest.raises(InvalidInputError, match="multiple of kv_heads"):
        gqa_attention(q[:3], np.concatenate([k, k]), np.concatenate([v, v]), 0, None, SCALE)
    with pytest.raises(InvalidInputError, match="do not fit"):
        gqa_attention(q, k, v, 3, None, SCALE)
    with pytest.raises(InvalidInputError, match="start"):
        gqa_attention(q, k, v, -1, None, SCALE)
    with pytest.raises(InvalidInputError, match="window"):
        gqa_attention(q, k, v, 0, 0, SCALE)
    with pytest.raises(InvalidInputError, match="head_dim"):
        gqa_attention(q[:, :, :4].copy(), k, v, 0, None, SCALE)
    with pytest.raises(InvalidInputError, match="values"):
        gqa_attention(q, k, v[:, :4].copy(), 0, None, SCALE)
    with pytest.raises(InvalidInputError, match="dtype"):
        gqa_attention(q.astype(np.float64), k, v, 0, None, SCALE)
    with pytest.raises(InvalidInputError, match="3-dimensional"):
        gqa_attention(q[0], k, v, 0, None, SCALE)
    with pytest.raises(InvalidInputError, match="finite"):
        gqa_attention(q, k, v, 0, None, float("nan"))
