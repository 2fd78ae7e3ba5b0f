"""Scans release the GIL: a Python thread keeps running during a long top-k batch."""

from __future__ import annotations

import threading

import numpy as np

from mcp_gemma import _rust_core as rc


def test_python_thread_progresses_during_topk_batch() -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((200_000, 128), dtype=np.float32)
    qs = rng.standard_normal((64, 128), dtype=np.float32)
    stop = threading.Event()
    ticks = [0]

    def count() -> None:
        while not stop.is_set():
            ticks[0] += 1

    worker = threading.Thread(target=count)
    worker.start()
    try:
        before = ticks[0]
        rc.topk_batch(m, qs, 10)
        during = ticks[0] - before
    finally:
        stop.set()
        worker.join(timeout=10)
    # With the GIL held the counter could not move at all while the call runs.
    assert during > 1000, during


def test_index_search_from_threads_is_consistent() -> None:
    rng = np.random.default_rng(1)
    m = rng.standard_normal((20_000, 64), dtype=np.float32)
    index = rc.VectorIndex(64, "ip")
    index.add(np.arange(20_000, dtype=np.uint64), m)
    want = index.search(m[0], 5)[0].tolist()
    results: list[list[int]] = []

    def search() -> None:
        for _ in range(20):
            results.append(index.search(m[0], 5)[0].tolist())

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 80
    assert all(r == want for r in results)
