"""The hand-written stub matches the compiled module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from mcp_gemma import _rust_core

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "mcp_gemma" / "_rust_core.pyi"


def _stub_all() -> set[str]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError("stub has no __all__")


def test_module_exports_everything_in_stub_all() -> None:
    missing = _stub_all() - set(dir(_rust_core))
    assert not missing, f"stub declares names the module lacks: {sorted(missing)}"


def test_stub_all_covers_public_module_names() -> None:
    public = {n for n in dir(_rust_core) if not n.startswith("_")} | {"__version__"}
    assert public <= _stub_all()


def test_build_metadata() -> None:
    assert _rust_core.__version__
    assert _rust_core.build_profile in {"release", "debug"}
    assert _rust_core.simd_level() in {"avx2", "neon", "scalar"}


def test_stubtest_passes() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "mcp_gemma._rust_core",
            "--allowlist",
            str(ROOT / "rust_core" / "stubtest-allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
