"""``compute.one_thread_blas``: numpy's BLAS at one thread while any holder runs, on whichever thread.

The int8 Gemma decoder's attention products run under it, and OpenBLAS's sums differ in the last
bits between one thread and its pool, so a hold that silently does nothing changes the model's
greedy answers (the packaged Gemma said ' orange' for ' blue' in a console chat once the server had
embedded documents on another worker thread).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mcp_gemma.compute import one_thread_blas


def blas_threads() -> list[int]:
    """Threads of numpy's own BLAS: the hold is for what numpy calls. Another copy loaded after the
    first hold (scipy's, once the full suite has imported it) is neither held nor needed."""
    return [
        int(lib["num_threads"])
        for lib in threadpool_info()
        if lib["user_api"] == "blas" and "numpy" in Path(lib["filepath"]).parent.name
    ]


def test_the_hold_takes_effect_on_a_thread_other_than_the_first_holder() -> None:
    np.ones((2, 2), dtype=np.float32) @ np.ones((2, 2), dtype=np.float32)  # numpy's BLAS is loaded
    assert blas_threads(), "numpy's BLAS is not visible to threadpoolctl"
    seen: dict[str, list[int]] = {}
    first_done, finish = threading.Event(), threading.Event()

    def first() -> None:
        # The first holder sets the limit and stays alive: threadpoolctl then treats it as the one
        # thread allowed to change a pthreads OpenBLAS's thread count.
        with one_thread_blas.held():
            seen["first"] = blas_threads()
        first_done.set()
        finish.wait(30)

    def second() -> None:
        with one_thread_blas.held():
            seen["second"] = blas_threads()
        seen["after"] = blas_threads()

    with threadpool_limits(limits=2, user_api="blas"):  # a pool of two, so one thread shows
        holder = threading.Thread(target=first)
        holder.start()
        try:
            assert first_done.wait(30)
            other = threading.Thread(target=second)
            other.start()
            other.join(30)
        finally:
            finish.set()
            holder.join(30)
        libs = len(blas_threads())
        assert seen == {"first": [1] * libs, "second": [1] * libs, "after": [2] * libs}
    assert not holder.is_alive() and not other.is_alive()
