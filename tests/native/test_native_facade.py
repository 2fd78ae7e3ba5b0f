"""mcp_gemma.native re-raises Rust-core errors as domain errors."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_gemma import native
from mcp_gemma.errors import InvalidInputError


def test_facade_maps_value_error_to_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        native.topk(np.ones((2, 2), dtype=np.float32), np.ones(2, dtype=np.float32), 0)
    with pytest.raises(InvalidInputError, match="max_chars"):
        native.chunk_text("x", 0)


def test_native_errors_context_wraps_class_methods() -> None:
    index = native.VectorIndex(2, "ip")
    with pytest.raises(InvalidInputError, match="dim=2"), native.native_errors():
        index.search(np.ones(3, dtype=np.float32), 1)


def test_facade_passes_results_through() -> None:
    idx, scores = native.topk(np.eye(3, dtype=np.float32), np.array([0, 1, 0], dtype=np.float32), 1)
    assert idx.tolist() == [1]
    assert scores.tolist() == [1.0]
    assert native.fuse_rrf([[1], [1]])[0][0] == 1
    assert native.tokenize("A b") == ["a", "b"]
    assert native.simd_level() in {"avx2", "neon", "scalar"}
    assert native.rust_core_version
