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


def test_dispatch_uses_the_best_kernels_the_cpu_has() -> None:
    """The Rust tests compare dispatched with portable kernels; if detection fell back to scalar they
    would compare portable with portable and still pass. So: AVX2 (+FMA) where /proc/cpuinfo lists it."""
    import os
    import platform
    from pathlib import Path

    machine = platform.machine().lower()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if os.environ.get("MCP_GEMMA_FORCE_SCALAR") is not None and machine in ("x86_64", "amd64"):
        assert native.simd_level() == "scalar"
    elif machine in ("x86_64", "amd64") and {"avx2", "fma"} <= flags:
        assert native.simd_level() == "avx2"
    elif machine in ("aarch64", "arm64"):
        assert native.simd_level() == "neon"
    else:
        assert native.simd_level() == "scalar"
