"""Scans release the GIL: a Python thread keeps running during a long top-k batch."""

from __future__ import annotations

import threading

import numpy as np

from mcp_gemma import _rust_core as rc
from tests.native.gil import assert_call_releases_the_gil


def test_python_thread_progresses_during_topk_batch() -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((200_000, 128), dtype=np.float32)
    qs = rng.standard_normal((256, 128), dtype=np.float32)
    assert_call_releases_the_gil(lambda: rc.topk_batch(m, qs, 10))


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
