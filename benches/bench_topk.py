"""Exact top-k: ours vs numpy (``m @ q`` + argpartition) vs faiss IndexFlatIP; int8 vs f32 with recall@10.

    python benches/bench_topk.py [--quick]

Data: 100k x 384 unit vectors around 1,000 centres (the shape of sentence embeddings), k = 10.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# _common goes first: it removes OpenBLAS overrides before numpy loads OpenBLAS.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np
from numpy.typing import NDArray

from mcp_gemma import _rust_core as rc


def _embeddings(n: int, d: int, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 100, 1), d), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _numpy_topk(m: NDArray[np.float32], q: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    s = m @ q
    i = np.argpartition(-s, k)[:k]
    return i[np.argsort(-s[i])]


def _numpy_topk_batch(m: NDArray[np.float32], qs: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    s = qs @ m.T
    i = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, i, axis=1), axis=1)
    return np.take_along_axis(i, order, axis=1)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (milliseconds, ratios > 1 mean we are faster)."""
    _common.require_release()
    n, d, k, batch = (5_000, 384, 10, 64) if quick else (100_000, 384, 10, 64)
    runs = 3 if quick else 15
    m = _embeddings(n, d, 0)
    queries = _embeddings(batch, d, 1)
    q = queries[0].copy()
    out: dict[str, Any] = {"n": n, "dim": d, "k": k, "batch": batch, "runs": runs, **_common.machine()}

    np.testing.assert_array_equal(rc.topk(m, q, k)[0], _numpy_topk(m, q, k))
    ids = np.arange(n, dtype=np.uint64)
    exact = rc.VectorIndex(d, "ip")
    exact.add(ids, m)
    quant = rc.VectorIndex(d, "ip", quantize=True, rerank=4)
    quant.add(ids, m)
    single: dict[str, Any] = {
        "ours": lambda: rc.topk(m, q, k),
        "index_f32": lambda: exact.search(q, k),
        "index_int8": lambda: quant.search(q, k),
        "numpy": lambda: _numpy_topk(m, q, k),
    }
    batched: dict[str, Any] = {
        "ours": lambda: rc.topk_batch(m, queries, k),
        "numpy": lambda: _numpy_topk_batch(m, queries, k),
    }
    try:
        import faiss
    except ImportError:
        out["faiss"] = "not installed"
    else:
        flat = faiss.IndexFlatIP(d)
        flat.add(m)
        out["faiss_threads"] = faiss.omp_get_max_threads()
        single["faiss"] = lambda: flat.search(q[None, :], k)
        batched["faiss"] = lambda: flat.search(queries, k)
    # every path takes its turn in each round (see _common.time_interleaved)
    for name, ms in _common.time_interleaved(single, runs).items():
        out[f"{name}_single_ms"] = ms
    for name, ms in _common.time_interleaved(batched, max(runs // 3, 2)).items():
        out[f"{name}_batch_ms"] = ms

    hits = 0
    for qq in queries:
        hits += len(set(exact.search(qq, k)[0].tolist()) & set(quant.search(qq, k)[0].tolist()))
    out["int8_recall_at_10"] = hits / (k * len(queries))
    rng = np.random.default_rng(2)
    uniform = rng.standard_normal((n, d), dtype=np.float32)
    u_exact = rc.VectorIndex(d, "ip")
    u_exact.add(ids, uniform)
    u_quant = rc.VectorIndex(d, "ip", quantize=True, rerank=4)
    u_quant.add(ids, uniform)
    uq = rng.standard_normal((32, d), dtype=np.float32)
    u_hits = sum(
        len(set(u_exact.search(x, k)[0].tolist()) & set(u_quant.search(x, k)[0].tolist())) for x in uq
    )
    out["int8_recall_at_10_uniform_random"] = u_hits / (k * len(uq))

    out["single_vs_numpy"] = _common.ratio(out["numpy_single_ms"], out["ours_single_ms"])
    out["index_f32_vs_numpy"] = _common.ratio(out["numpy_single_ms"], out["index_f32_single_ms"])
    out["batch_vs_numpy"] = _common.ratio(out["numpy_batch_ms"], out["ours_batch_ms"])
    if "faiss_single_ms" in out:
        out["single_vs_faiss"] = _common.ratio(out["faiss_single_ms"], out["ours_single_ms"])
        out["index_f32_vs_faiss"] = _common.ratio(out["faiss_single_ms"], out["index_f32_single_ms"])
        out["batch_vs_faiss"] = _common.ratio(out["faiss_batch_ms"], out["ours_batch_ms"])
    out["int8_vs_f32_index"] = _common.ratio(out["index_f32_single_ms"], out["index_int8_single_ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data, few runs (CI smoke)")
    args = parser.parse_args()
    res = run(args.quick)
    print(json.dumps(res, indent=2, default=str))
    print(
        f"\nsingle: ours {res['ours_single_ms']:.2f} ms, numpy {res['numpy_single_ms']:.2f} ms "
        f"(x{res['single_vs_numpy']:.2f})"
        + (
            f", faiss {res['faiss_single_ms']:.2f} ms (x{res['single_vs_faiss']:.2f})"
            if "faiss_single_ms" in res
            else ""
        )
    )
    print(
        f"batch {res['batch']}: ours {res['ours_batch_ms']:.1f} ms, numpy {res['numpy_batch_ms']:.1f} ms "
        f"(x{res['batch_vs_numpy']:.2f})"
        + (
            f", faiss {res['faiss_batch_ms']:.1f} ms (x{res['batch_vs_faiss']:.2f})"
            if "faiss_batch_ms" in res
            else ""
        )
    )
    print(
        f"index: f32 {res['index_f32_single_ms']:.2f} ms (x{res['index_f32_vs_numpy']:.2f} numpy"
        + (f", x{res['index_f32_vs_faiss']:.2f} faiss" if "index_f32_vs_faiss" in res else "")
        + f"), int8 {res['index_int8_single_ms']:.2f} ms "
        f"(x{res['int8_vs_f32_index']:.2f}), recall@10 {res['int8_recall_at_10']:.4f} "
        f"(uniform random data: {res['int8_recall_at_10_uniform_random']:.4f})"
    )


if __name__ == "__main__":
    main()
