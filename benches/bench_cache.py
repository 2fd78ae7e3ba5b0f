"""LRU+TTL cache: ours (TtlCache) vs a dict-based LRU with TTL in Python vs cachetools.TTLCache.

    python benches/bench_cache.py [--quick]

Workload: capacity 10k, 20k distinct keys with skewed (Zipf) popularity, 90% get / 10% set of
256-byte values, default TTL 5 minutes (nothing expires during the run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

# _common goes first: it removes OpenBLAS overrides before numpy loads OpenBLAS.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np

from mcp_gemma import _rust_core as rc


class DictLru:
    """The usual pure-Python LRU + TTL: an OrderedDict of (expiry, value)."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        item = self.data.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del self.data[key]
            return None
        self.data.move_to_end(key)
        return item[1]

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = (time.monotonic() + self.ttl, value)
        self.data.move_to_end(key)
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)


def _ops(n_ops: int, n_keys: int, seed: int = 0) -> list[tuple[bool, str]]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_keys + 1) ** 0.9
    keys = rng.choice(n_keys, n_ops, p=weights / weights.sum())
    sets = rng.random(n_ops) < 0.1
    return [(bool(s), f"doc:{k}:chunk") for s, k in zip(sets, keys, strict=True)]


def _drive(get: Any, put: Any, ops: list[tuple[bool, str]], value: bytes) -> int:
    hits = 0
    for is_set, key in ops:
        if is_set:
            put(key, value)
        elif get(key) is not None:
            hits += 1
        else:
            put(key, value)
    return hits


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return ns per operation (ratios > 1 mean we are faster)."""
    _common.require_release()
    n_ops = 20_000 if quick else 200_000
    runs = 3 if quick else 7
    ops = _ops(n_ops, 20_000)
    value = bytes(256)
    out: dict[str, Any] = {"ops": n_ops, "capacity": 10_000, **_common.machine()}

    def ours() -> None:
        c = rc.TtlCache(10_000, ttl_seconds=300.0)
        _drive(c.get, c.set, ops, value)

    def dict_lru() -> None:
        c = DictLru(10_000, 300.0)
        _drive(c.get, c.set, ops, value)

    paths: dict[str, Any] = {"ours": ours, "dict_lru": dict_lru}
    try:
        import cachetools
    except ImportError:
        out["cachetools"] = "not installed"
    else:

        def ct() -> None:
            c: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(10_000, ttl=300.0)
            _drive(c.get, c.__setitem__, ops, value)

        paths["cachetools"] = ct
    for name, ms in _common.time_interleaved(paths, runs).items():
        out[f"{name}_ns_per_op"] = ms * 1e6 / n_ops
    out["vs_dict_lru"] = _common.ratio(out["dict_lru_ns_per_op"], out["ours_ns_per_op"])
    if "cachetools_ns_per_op" in out:
        out["vs_cachetools"] = _common.ratio(out["cachetools_ns_per_op"], out["ours_ns_per_op"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer operations and runs (CI smoke)")
    res = run(parser.parse_args().quick)
    print(json.dumps(res, indent=2, default=str))
    line = f"\nours {res['ours_ns_per_op']:.0f} ns/op"
    line += f", dict LRU {res['dict_lru_ns_per_op']:.0f} (x{res['vs_dict_lru']:.2f})"
    if "cachetools_ns_per_op" in res:
        line += f", cachetools {res['cachetools_ns_per_op']:.0f} (x{res['vs_cachetools']:.2f})"
    print(line)


if __name__ == "__main__":
    main()
