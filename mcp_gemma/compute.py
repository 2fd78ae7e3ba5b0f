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
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._limiter is not None:
                    self._limiter.restore_original_limits()
                    self._limiter = None


one_thread_blas = _OneThreadBlas()
