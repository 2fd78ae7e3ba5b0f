"""The embedder interface: texts in, L2-normalised float32 rows out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
ProgressFn = Callable[[int, int], None]


class Embedder(Protocol):
    """A loaded sentence-embedding model (sync; called from worker threads)."""

    model_id: str
    dim: int

    def embed(
        self,
        texts: Sequence[str],
        *,
        cancel: threading.Event | None = None,
        progress: ProgressFn | None = None,
    ) -> Vectors:
        """Embed ``texts`` into an ``(n, dim)`` array of unit vectors."""
        ...
