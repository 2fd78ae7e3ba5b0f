"""The async embedding service the server uses: lazy load once, content-hash cache, worker threads."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import numpy as np

from mcp_gemma.compute import gpu_driver_present, torch_installed
from mcp_gemma.embeddings.base import Embedder, Vectors
from mcp_gemma.embeddings.batching import EmbeddingBatcher
from mcp_gemma.embeddings.config import EmbeddingSettings
from mcp_gemma.errors import ModelUnavailableError
from mcp_gemma.health import ComponentStatus

logger = logging.getLogger(__name__)

AsyncProgress = Callable[[int, int], Coroutine[Any, Any, None]]
EmbedderFactory = Callable[[], Embedder]


def content_hash(text: str) -> str:
    """The cache key of a text: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingService:
    """Embeds texts without blocking the event loop; the model loads on first use, once."""

    def __init__(self, settings: EmbeddingSettings, factory: EmbedderFactory | None = None) -> None:
        self.settings = settings
        self._factory = factory or self._default_factory
        self._embedder: Embedder | None = None
        self._torch_installed: bool | None = None
        self._weights_found = factory is not None  # a custom embedder needs no packaged weights
        self._load_lock = anyio.Lock()
        self._load_error: str | None = None
        self._preload: threading.Event | None = None
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.batcher = EmbeddingBatcher(
            self._embed_batch,
            batch_size=settings.batch_size,
            wait_s=settings.batch_wait_ms / 1000,
            max_texts=settings.max_queue_texts,
        )

    def _on_cpu(self) -> bool:
        s = self.settings
        return s.device == "cpu" or (s.device == "auto" and not gpu_driver_present())

    def _has_torch(self) -> bool:
        """Whether the ``[torch]`` extra is installed (looked up once, without importing it)."""
        if self._torch_installed is None:
            self._torch_installed = torch_installed()
        return self._torch_installed

    def _torch_factory(self) -> Embedder:
        from mcp_gemma.embeddings.minilm import MiniLMEmbedder

        s = self.settings
        return MiniLMEmbedder(
            s.model, device=s.device, batch_size=s.batch_size, max_seq_length=s.max_seq_length
        )

    def _default_factory(self) -> Embedder:
        from mcp_gemma.embeddings.minilm import resolve_model_dir

        s = self.settings
        # An explicit device="cuda" without torch goes to the torch path, whose error names the extra.
        lean = self._on_cpu() or (s.device == "auto" and not self._has_torch())
        if s.backend == "numpy" or (s.backend == "auto" and lean):
            from mcp_gemma.embeddings.numpy_bert import LeanBertEmbedder, UnsupportedModel

            try:
                return LeanBertEmbedder(
                    resolve_model_dir(s.model),
                    s.model,
                    batch_size=s.batch_size,
                    max_seq_length=s.max_seq_length,
                )
            except UnsupportedModel as exc:
                if s.backend == "numpy":
                    raise ModelUnavailableError(
                        f"embedding.backend='numpy' cannot run {s.model!r}: {exc}; use 'auto' or 'torch'"
                    ) from exc
                logger.info("numpy embedder does not cover %s (%s): loading it with torch", s.model, exc)
        return self._torch_factory()

    @property
    def loaded(self) -> bool:
        """True once the model is in memory."""
        return self._embedder is not None

    async def get(self) -> Embedder:
        """The loaded embedder; the first caller loads it in a worker thread, the others wait."""
        if self._embedder is not None:
            return self._embedder
        async with self._load_lock:
            if self._preload is not None and not self._preload.is_set():
                await anyio.to_thread.run_sync(self._preload.wait)  # the background load finishes first
            if self._embedder is None:
                try:
                    self._embedder = await anyio.to_thread.run_sync(self._factory)
                    self._load_error = None
                except Exception as exc:
                    self._load_error = str(exc)
                    raise
        return self._embedder

    @property
    def dim(self) -> int:
        """Vector dimension (384 for MiniLM); loads nothing if already known."""
        return self._embedder.dim if self._embedder is not None else 384

    def _embed_batch(self, texts: list[str]) -> Vectors:
        """One coalesced forward pass of the batcher (worker thread; the model is loaded by then)."""
        embedder = self._embedder
        if embedder is None:  # pragma: no cover - embed() loads the model before queueing
            raise ModelUnavailableError("the embedder is not loaded")
        return embedder.embed(texts)

    async def embed(self, texts: Sequence[str], progress: AsyncProgress | None = None) -> Vectors:
        """Unit vectors for ``texts`` (cached by content hash); cancellation stops between batches.

        Calls with fewer than ``batch_size`` uncached texts share forward passes with concurrent
        calls (:class:`EmbeddingBatcher`); larger ones run on their own, with progress. Either way
        they count against ``max_queue_texts``: past it the call fails with ``ServerBusyError``.
        """
        embedder = await self.get()
        keys = [content_hash(t) for t in texts]
        out = np.empty((len(texts), embedder.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = np.frombuffer(hit, dtype=np.float32)
                    self.hits += 1
                else:
                    todo.setdefault(key, []).append(i)
                    self.misses += 1
        if todo:
            first = [idx[0] for idx in todo.values()]
            if len(first) < self.settings.batch_size:
                fresh = await self.batcher.embed([texts[i] for i in first])
                if progress is not None:
                    await progress(len(first), len(first))
            else:
                with self.batcher.reserved(len(first)):
                    fresh = await self._embed_alone(embedder, [texts[i] for i in first], progress)
            self._remember(list(todo), fresh)
            for row, indices in zip(fresh, todo.values(), strict=True):
                out[indices] = row
        return out

    async def _embed_alone(
        self, embedder: Embedder, texts: list[str], progress: AsyncProgress | None
    ) -> Vectors:
        """A large call in its own forward passes on the loaded embedder, with progress.

        On a CPU that is the numpy embedder for every call, large ones too: its packed batches run at
        least as fast as the torch embedder's on the same cores (``benches/bench_embed.py``), so there
        is no second (torch) model to load for an ingest (+776 MiB resident, measured 2026-12-01).
        """
        cancel = threading.Event()

        def report(done: int, total: int) -> None:
            if progress is not None:
                anyio.from_thread.run(progress, done, total)

        def work() -> Vectors:
            return embedder.embed(texts, cancel=cancel, progress=report)

        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            cancel.set()
            raise

    async def embed_one(self, text: str) -> Vectors:
        """The unit vector of one text, shape ``(dim,)``."""
        vectors = await self.embed([text])
        row: Vectors = vectors[0]
        return row

    def _remember(self, keys: list[str], rows: Vectors) -> None:
        cap = self.settings.cache_size
        if cap == 0:
            return
        with self._cache_lock:
            for key, row in zip(keys, rows, strict=True):
                self._cache[key] = row.tobytes()
                self._cache.move_to_end(key)
            while len(self._cache) > cap:
                self._cache.popitem(last=False)

    def start_preload(self) -> None:
        """Load the model in a background thread (``embedding.preload``), so the first query after
        start-up does not wait for the torch import; a failure is logged and retried by the next use."""
        if self._embedder is not None or self._preload is not None:
            return
        done = threading.Event()
        self._preload = done

        def work() -> None:
            try:
                self._embedder = self._factory()
                self._load_error = None
            except Exception as exc:
                self._load_error = str(exc)
                logger.warning("embedder preload failed: %s", exc)
            finally:
                done.set()

        threading.Thread(target=work, name="embedder-preload", daemon=True).start()

    def missing_weights(self) -> str | None:
        """What to install when the packaged model's weights are not installed, else ``None``
        (looked up without importing anything; once found, not looked up again)."""
        if self._weights_found:
            return None
        from mcp_gemma.embeddings.minilm import missing_weights

        missing = missing_weights(self.settings.model)
        self._weights_found = missing is None
        return missing

    def status(self) -> ComponentStatus:
        """What health_check reports about the embedder."""
        e = self._embedder
        detail: dict[str, str | int | float | bool | None] = {
            "model": self.settings.model,
            "cache_entries": len(self._cache),
            "cache_hits": self.hits,
            "cache_misses": self.misses,
            "queued_texts": self.batcher.pending,
            "batched_calls": self.batcher.requests,
            "forward_passes": self.batcher.passes,
        }
        if e is not None:
            detail["dim"] = e.dim
            detail["backend"] = str(getattr(e, "backend", "custom"))
            detail["load_seconds"] = round(float(getattr(e, "load_seconds", 0.0)), 3)
        if self._load_error:
            detail["error"] = self._load_error
        elif e is None and (missing := self.missing_weights()):
            detail["error"] = missing
        return ComponentStatus(name=self.settings.model, kind="embedder", loaded=e is not None, detail=detail)
