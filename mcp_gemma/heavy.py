"""Serialise the first import of heavy ML packages across worker threads.

transformers resolves names lazily; two threads importing from it for the first time at once (the
embedder and Gemma loading side by side) can see a half-initialised module and fail with
``ImportError: cannot import name 'AutoModel'``. Every loader imports through this lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

IMPORT_LOCK = threading.RLock()


def gpu_driver_present() -> bool:
    """Whether a GPU driver is installed (NVIDIA or ROCm): without one, 'auto' devices mean the CPU and
    torch need not be imported to find out (seconds and ~500 MB resident)."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))
