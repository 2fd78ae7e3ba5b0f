"""The process-wide compute environment the model code shares: the import lock of the ML packages,
whether torch is installed (the ``[torch]`` extra), whether a GPU driver is there, and numpy's BLAS
held to one thread while the lean model code runs.

Imports. transformers resolves names lazily; two threads importing from it for the first time at once (the
embedder and Gemma loading side by side) can see a half-initialised module and fail with
``ImportError: cannot import name 'AutoModel'``. Every loader imports through this lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_gemma.errors import ModelUnavailableError

IMPORT_LOCK = threading.RLock()

TORCH_EXTRA = "pip install 'mcp-gemma[torch]'"
"""How to add torch, transformers and accelerate: the default install runs without them (numpy
embedder, int8 Gemma on the Rust kernels); CUDA, float dtypes and the transformers paths need them."""


def torch_installed() -> bool:
    """Whether torch and transformers can be imported, found without importing them."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
    except (ImportError, ValueError):  # a finder that refuses them counts as absent
        return False


def import_torch(purpose: str) -> Any:
    """Import torch and transformers (under :data:`IMPORT_LOCK`) and return torch; without the
    ``[torch]`` extra, a :class:`ModelUnavailableError` naming ``purpose`` and how to install it."""
    with IMPORT_LOCK:
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise ModelUnavailableError(
                f"{purpose} needs torch and transformers, which this install does not have "
                f"({exc.name or exc}); install them with: {TORCH_EXTRA}"
            ) from exc
    return torch


def gpu_driver_present() -> bool:
    """Whether a GPU driver is installed (NVIDIA or ROCm): without one, 'auto' devices mean the CPU and
    torch need not be imported to find out (seconds and ~500 MB resident)."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))


# BLAS threads: numpy's BLAS held to one thread while the lean model code runs (the int8 Gemma
# decoder, the numpy embedder on short inputs).
#
# Their numpy products are small (attention over a handful of heads, one query's layers), where
# OpenBLAS's threads cost more than they give, and keep spinning after each call, taking the cores the
# Rust kernels or the next call need. Measured on two cores: a 242-token Gemma prompt + 64 new tokens
# took 4.61 s with OpenBLAS's threads and 3.45 s without.
#
# It also fixes the bits: OpenBLAS's products differ in the last bits between one thread and its
# pool, and the int8 decoder's greedy answers follow them (the packaged Gemma's ' blue' or ' orange'
# for the console test's question), so the hold must take effect on whichever thread runs the model.


class _OneThreadBlas:
    """Process-wide: one BLAS thread while any holder runs, the original limits back after the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: Any = None
        self._limiter: Any = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                from threadpoolctl import ThreadpoolController

                if self._controller is None:
                    self._controller = ThreadpoolController()  # inspects the loaded libraries once
                _release_blas_claim()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._limiter is not None:
                    _release_blas_claim()
                    self._limiter.restore_original_limits()
                    _release_blas_claim()
                    self._limiter = None


def _release_blas_claim() -> None:
    """Let this thread set OpenBLAS's thread count.

    threadpoolctl (3.8 here; older releases have no such rule) lets only one thread change a
    pthreads OpenBLAS's process-wide count: the first to set it, for as long as that thread lives;
    other threads' calls silently do nothing. Holders here come and go on worker threads, and the
    limit is set by the first and restored by the last, so each change is made with that claim
    released (``_OneThreadBlas``'s lock serialises them). Without this, a generation on another
    worker thread than the one that first set a limit (an embedding's, say) ran its attention
    products on OpenBLAS's full pool, whose sums differ in the last bits from one thread's, and
    the packaged Gemma's greedy answer depended on which requests the server had served before.
    """
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)  # absent in older releases
    if clear is not None:
        clear(force=True)


one_thread_blas = _OneThreadBlas()
