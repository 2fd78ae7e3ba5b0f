"""Serialise the first import of heavy ML packages across worker threads.

transformers resolves names lazily; two threads importing from it for the first time at once (the
embedder and Gemma loading side by side) can see a half-initialised module and fail with
``ImportError: cannot import name 'AutoModel'``. Every loader imports through this lock.
"""

from __future__ import annotations

import threading

IMPORT_LOCK = threading.RLock()
