"""numpy arrays cross into the Rust core through the buffer protocol: each argument is checked (type,
dimensions, dtype with its byte order, layout, alignment, in-place aliasing) with a message that
says what to pass, and each result is a new, writable array that owns its data."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from mcp_gemma import _rust_core as rc

M = np.arange(12, dtype=np.float32).reshape(3, 4)
Q = np.ones(4, dtype=np.float32)


def test_dtype_is_checked_with_its_byte_order() -> None:
    # numpy exports a big-endian float32 as the buffer format ">f": same size, other bytes
    with pytest.raises(
        ValueError, match=r"^matrix must have dtype float32, got >f4; convert with \.astype\(np\.float32\)$"
    ):
        rc.topk(M.astype(">f4"), Q, 1)
    # datetime64 exports no buffer at all: the same messages, from the array's attributes
    with pytest.raises(ValueError, match=r"^query must have dtype float32, got datetime64\[s\]"):
        rc.topk(M, np.zeros(4, "M8[s]"), 1)
    with pytest.raises(ValueError, match=r"^query must be 1-dimensional, got shape \[3, 4\]$"):
        rc.topk(M, np.zeros((3, 4), "M8[s]"), 1)
    with pytest.raises(ValueError, match=r"^matrix must be a numpy\.ndarray of f32, got memoryview$"):
        rc.topk(memoryview(M), Q, 1)  # type: ignore[arg-type]


def test_both_numpy_spellings_of_uint64_are_ids() -> None:
    index = rc.VectorIndex(4, "ip")
    index.add(np.array([5, 9], dtype=np.ulonglong), M[:2])  # buffer format "Q", not "L"
    assert index.ids().tolist() == [5, 9]
    with pytest.raises(ValueError, match=r"^ids must have dtype uint64, got int64"):
        index.remove(np.array([5], dtype=np.int64))


def test_unaligned_data_is_refused_and_read_only_inputs_are_read() -> None:
    raw = np.frombuffer(b"\0" + M.tobytes(), dtype=np.float32, offset=1).reshape(3, 4)
    assert not raw.flags.aligned
    with pytest.raises(
        ValueError, match=r"^matrix must be C-contiguous and aligned for float32; pass matrix\.copy\(\)$"
    ):
        rc.topk(raw, Q, 1)
    frozen = M.copy()
    frozen.flags.writeable = False
    idx, scores = rc.topk(frozen, Q, 2)
    assert idx.tolist() == [2, 1] and scores.tolist() == [38.0, 22.0]


def test_an_in_place_argument_may_not_alias_another_argument() -> None:
    x = np.linspace(-2, 2, 16, dtype=np.float32).reshape(4, 4)
    before = x.copy()
    in_use = r"^x must be writable and not in use elsewhere \(The given array is already borrowed\)$"
    with pytest.raises(ValueError, match=in_use):
        rc.bias_gelu(x, x[1])
    ones = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match=in_use):
        rc.add_layer_norm(x, ones, x, ones, ones, 1e-12)
    with pytest.raises(ValueError, match=in_use):
        rc.add_layer_norm(x[:2], ones, x[2:], x[1], ones, 1e-12)
    np.testing.assert_array_equal(x, before)
    # disjoint rows of one buffer are separate arrays
    rc.bias_gelu(x[:2], x[3])
    want = before[:2].copy()
    rc.bias_gelu(want, before[3].copy())
    np.testing.assert_array_equal(x[:2], want)
    np.testing.assert_array_equal(x[2:], before[2:])


def test_results_are_new_writable_arrays_that_outlive_their_source() -> None:
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 64), dtype=np.float32)
    x = rng.standard_normal((2, 64), dtype=np.float32)
    q8 = rc.Q8Matrix.quantize(weights)
    codes, scales, y = q8.codes(), q8.scales(), q8.matmul(x)
    index = rc.VectorIndex(4, "ip")
    index.add(np.array([3, 1], dtype=np.uint64), M[:2])
    ids, rows = index.snapshot()
    row = index.get(1)
    assert row is not None
    results: list[np.ndarray] = [codes, scales, y, ids, rows, row]
    for a in results:
        assert a.flags.writeable and a.flags.owndata and a.flags.c_contiguous and a.base is None
    assert (codes.dtype, codes.shape, scales.dtype, scales.shape) == (
        np.dtype(np.int8),
        (8, 64),
        np.dtype(np.float32),
        (8, 2),
    )
    assert (y.dtype, y.shape, ids.dtype, rows.shape) == (
        np.dtype(np.float32),
        (2, 8),
        np.dtype(np.uint64),
        (2, 4),
    )
    # writing a result changes nothing the index or the matrix holds
    row[:] = -1.0
    rows[:] = -1.0
    np.testing.assert_array_equal(index.get(1), M[1])
    np.testing.assert_array_equal(index.snapshot()[1], M[:2])
    saved = codes.copy()
    codes[:] = 0
    np.testing.assert_array_equal(q8.codes(), saved)
    np.testing.assert_array_equal(q8.matmul(x), y)
    # and results keep their data after their source is gone
    del q8, index
    gc.collect()
    assert ids.tolist() == [3, 1]
    np.testing.assert_array_equal(rows, -np.ones((2, 4), dtype=np.float32))
    np.testing.assert_array_equal(rc.Q8Matrix.from_parts(saved, scales).matmul(x), y)
