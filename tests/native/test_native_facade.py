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


def _cpu_flags() -> set[str]:
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_int8_products_use_the_best_kernel_the_cpu_has() -> None:
    """As above, for the int8 (Q8Matrix) products of several rows: AVX-512 VNNI where the CPU lists
    AVX-512 F/BW/VNNI and the build has the kernel (Rust 1.89+), else AVX2, else portable."""
    import os
    import platform

    from mcp_gemma import _rust_core

    flags = _cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    vnni = {"avx512f", "avx512bw"} <= flags and bool({"avx512_vnni", "avx512vnni"} & flags)
    level = native.q8_kernel_level()
    if not x86 or os.environ.get("MCP_GEMMA_FORCE_SCALAR") is not None or not {"avx2", "fma"} <= flags:
        assert level == "portable"
    elif vnni and _rust_core.q8_avx512_built and os.environ.get("MCP_GEMMA_NO_AVX512") is None:
        assert level == "avx512_vnni"
    else:
        assert level == "avx2"


def test_no_avx512_switch_keeps_the_avx2_int8_kernels() -> None:
    import os
    import subprocess
    import sys

    code = "from mcp_gemma import native; print(native.q8_kernel_level())"
    env = {**os.environ, "MCP_GEMMA_NO_AVX512": "1"}
    env.pop("MCP_GEMMA_FORCE_SCALAR", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    want = "avx2" if {"avx2", "fma"} <= _cpu_flags() and native.simd_level() == "avx2" else "portable"
    assert result.stdout.strip() == want
