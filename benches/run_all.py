"""Run every benchmark, print each figure beside its peer, write ``benches/results.json``.

Usage: ``python benches/run_all.py [--quick] [--only NAME ...]``. ``--quick`` is the CI smoke (small
sizes, few runs; its numbers are not the ones to quote). Refuses a debug build of the Rust core.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common  # noqa: E402, F401 - clears OPENBLAS_* before numpy loads

BENCHES = [
    "bench_startup",
    "bench_topk",
    "bench_keyword",
    "bench_cache",
    "bench_embed",
    "bench_search",
    "bench_ingest",
    "bench_memory",
    "bench_generate",
]


def machine() -> dict[str, Any]:
    import os

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke: small sizes, few runs")
    parser.add_argument("--only", nargs="*", default=None, help="bench module names to run")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    from mcp_gemma import native

    if native.build_profile != "release":
        print(
            "refusing to benchmark a debug build of the Rust core: "
            "pip install . (or maturin develop --release)"
        )
        return 2
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "simd": native.simd_level(),
        "benches": {},
    }
    failed = []
    for name in args.only or BENCHES:
        if not (HERE / f"{name}.py").exists():
            print(f"== {name}: not present, skipped")
            continue
        print(f"== {name}")
        start = time.perf_counter()
        try:
            module = importlib.import_module(name)
            results["benches"][name] = module.run(quick=args.quick)
        except ImportError as exc:  # a peer (faiss, llama.cpp …) not installed: say so, go on
            print(f"   skipped: {exc}")
            results["benches"][name] = {"skipped": str(exc)}
        except Exception:  # report every bench, then fail at the end
            traceback.print_exc()
            failed.append(name)
            results["benches"][name] = {"error": traceback.format_exc(limit=3)}
        print(f"   ({time.perf_counter() - start:.1f} s)")
    args.out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"wrote {args.out}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
