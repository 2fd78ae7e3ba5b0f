"""Run every benchmark, print each figure beside its peer, write ``benches/results.json``.

Usage: ``python benches/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--quiet LOAD]
[--out PATH]``. ``--quick`` is the CI smoke (small sizes, few runs; its numbers are not the ones to
quote): it writes to the temporary directory unless ``--out`` is given, so it never replaces a full
run's ``benches/results.json``.

Every bench's entry records the load averages (1, 5, 15 min) at its start and end and its wall time.
``--quiet 0.5`` waits before each bench until the 1-minute load average is below 0.5 (up to
``--quiet-wait`` seconds; a bench that starts without it is marked ``"quiet": false``): figures are
quoted only from quiet runs, and a full run takes long enough that other work on the machine starts
and stops during it.
Refuses a debug build of the Rust core. Exits 1 only when a bench raises (timings never fail it); a
bench whose peer is not installed is skipped with the reason printed, but an import error inside
``mcp_gemma`` or the benches themselves counts as a failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common  # noqa: E402 - first: it clears OPENBLAS_* before numpy loads

BENCHES = [
    "bench_startup",
    "bench_topk",
    "bench_ann",
    "bench_keyword",
    "bench_cache",
    "bench_embed",
    "bench_search",
    "bench_ingest",
    "bench_memory",
    "bench_load",
    "bench_rest",
    "bench_scale",
    "bench_generate",
    "bench_quality",
    "bench_answers",
]
# Modules whose ImportError is a bug in this repository, not a missing optional peer.
FIRST_PARTY = {"mcp_gemma", "_common", "_one_tool_server", *BENCHES}


def first_party_import_error(exc: ImportError) -> bool:
    return (exc.name or "").split(".")[0] in FIRST_PARTY


def report_unmeasured(result: Any) -> None:
    """Print every peer or configuration a bench recorded as not measured (e.g. llama.cpp absent)."""
    if not isinstance(result, dict):
        return
    for key, value in result.items():
        reason = None
        if isinstance(value, dict):  # {"error": "llama-cpp-python is not installed ..."}
            reason = value.get("skipped") or value.get("error")
        elif isinstance(value, str) and "not installed" in value:  # "faiss": "not installed"
            reason = value
        if isinstance(reason, str):
            print(f"   {key} not measured: {reason}")


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


def wait_for_quiet(below: float, limit_s: float, *, poll_s: float = 5.0) -> bool:
    """Wait until the 1-minute load average is below ``below``; False if ``limit_s`` passed first."""
    deadline = time.monotonic() + limit_s
    while True:
        load = _common.load_average()
        if not load or load[0] < below:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke: small sizes, few runs")
    parser.add_argument("--only", nargs="*", default=None, help="bench module names to run")
    parser.add_argument("--skip", nargs="*", default=[], help="bench module names to leave out")
    parser.add_argument(
        "--quiet",
        type=float,
        default=None,
        metavar="LOAD",
        help="before each bench, wait until the 1-minute load average is below LOAD",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="longest wait for --quiet per bench (default 600); then the bench runs, marked not quiet",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: benches/results.json; with --quick, one in the temp directory)",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "mcp-gemma-bench-quick.json"
            if args.quick
            else HERE / "results.json"
        )

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
        "int8": native.q8_kernel_level(),
        "benches": {},
    }
    print(
        f"Rust kernels: {results['simd']}, int8 {results['int8']} ({native.build_profile} build); "
        "every figure below uses them"
    )
    failed = []
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(BENCHES))
    if unknown:
        print(f"unknown bench names: {', '.join(unknown)} (known: {', '.join(BENCHES)})")
        return 2
    for name in [n for n in args.only or BENCHES if n not in args.skip]:
        if not (HERE / f"{name}.py").exists():
            print(f"== {name}: not present, skipped")
            continue
        quiet = None if args.quiet is None else wait_for_quiet(args.quiet, args.quiet_wait)
        load_start = _common.load_average()
        print(f"== {name} (load average {' / '.join(map(str, load_start)) or 'unknown'})")
        start = time.perf_counter()
        try:
            module = importlib.import_module(name)
            results["benches"][name] = module.run(quick=args.quick)
            report_unmeasured(results["benches"][name])
        except ImportError as exc:
            if first_party_import_error(exc):  # our own code is broken: that is a failure
                traceback.print_exc()
                failed.append(name)
                results["benches"][name] = {"error": traceback.format_exc(limit=3)}
            else:  # a peer (faiss, llama.cpp …) not installed: say so, go on
                print(f"   skipped: {exc}")
                results["benches"][name] = {"skipped": str(exc)}
        except Exception:  # report every bench, then fail at the end
            traceback.print_exc()
            failed.append(name)
            results["benches"][name] = {"error": traceback.format_exc(limit=3)}
        wall = time.perf_counter() - start
        entry = results["benches"][name]
        if isinstance(entry, dict):
            entry["run"] = {
                "load_start": load_start,
                "load_end": _common.load_average(),
                "wall_s": round(wall, 1),
                **({} if quiet is None else {"quiet": quiet}),
            }
        print(f"   ({wall:.1f} s)")
        # after every bench: a run cut short (a long quiet window ending) keeps what it measured
        args.out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    args.out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"wrote {args.out}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
