"""The optional HNSW graph that serves unfiltered vector searches over a large knowledge base (``rag.ann``).

The exact :class:`~mcp_gemma.native.VectorIndex` stays the source of truth: filtered searches, MMR
and chunk vectors read it, and it answers every search until a graph is ready. The graph mirrors it:

* it is built in a background thread from one snapshot of the exact index, in batches, so a build over
  a million chunks (minutes on two cores) neither blocks the event loop nor holds a lock searches
  wait on;
* every change the index applies meanwhile is logged and replayed onto the new graph before it takes
  over, so nothing written during a build is missing from it;
* removed chunks stay in the graph as tombstones (never returned); once they make up
  :data:`REBUILD_TOMBSTONES` of its nodes, a fresh graph is built the same way while the old one serves.

Every method except the builder thread's runs under the owning index's lock, one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from mcp_gemma import native
from mcp_gemma.rag.config import RagSettings

logger = logging.getLogger(__name__)

Ids = npt.NDArray[np.uint64]
Vectors = npt.NDArray[np.float32]
BUILD_BATCH = 20_000  # rows per add while building: the stop flag is checked between batches
LIVE_BATCH = 256  # rows per add on a serving graph: keeps each write lock short for searches
REBUILD_TOMBSTONES = 0.25  # share of dead nodes that triggers a fresh build
REPLAY_INLINE_ROWS = 2_000  # larger replays run in a worker thread
RETRY_AFTER_S = 300.0  # a failed build is not retried on every sync

State = Literal["off", "building", "ready", "ready, rebuilding"]


@dataclass
class _Build:
    graph: native.HnswIndex
    log: list[tuple[Ids, Vectors | None]] = field(
        default_factory=list
    )  # (ids, rows) add / (ids, None) remove
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    rows: int = 0


class AnnMirror:
    """An HNSW graph kept in step with an exact vector index, built and rebuilt in the background."""

    def __init__(self, dim: int, settings: RagSettings) -> None:
        self.dim = dim
        self.settings = settings
        self.graph: native.HnswIndex | None = None
        self.build_seconds: float | None = None
        self.builds = 0
        self.last_error: str | None = None
        self._failed_at: float | None = None
        self._build: _Build | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> State:
        """What serves unfiltered searches and whether a graph is being built."""
        if self.graph is None:
            return "building" if self._build is not None else "off"
        return "ready, rebuilding" if self._build is not None else "ready"

    # ---- reading ------------------------------------------------------------------------------

    def search(self, query: Vectors, k: int, exact: native.VectorIndex) -> tuple[Ids, Vectors] | None:
        """Approximate top ``k``, or ``None`` when no graph serves yet.

        The graph walks int8 codes and keeps no f32 rows of its own (they would double the index's
        memory: 1.5 GB at 1M × 384); its ``ef`` candidates are re-scored on the exact index's rows,
        so the scores returned are exact.
        """
        graph = self.graph
        if graph is None:
            return None
        candidates = graph.candidates(query, k, ef=max(self.settings.ann_ef_search, k))
        return exact.search(query, k, candidates)

    # ---- following the exact index ------------------------------------------------------------

    def added(self, ids: Ids, rows: Vectors) -> None:
        """Rows the exact index just took (new or replaced)."""
        if self._build is not None:
            self._build.log.append((ids, rows))
        if self.graph is not None:
            for start in range(0, len(ids), LIVE_BATCH):
                self.graph.add(ids[start : start + LIVE_BATCH], rows[start : start + LIVE_BATCH])

    def removed(self, ids: Ids) -> None:
        """Rows the exact index just dropped."""
        if self._build is not None:
            self._build.log.append((ids, None))
        if self.graph is not None:
            self.graph.remove(ids)

    async def maintain(self, exact: native.VectorIndex) -> None:
        """After changes: install a finished build, start or drop a graph as the setting asks."""
        build = self._build
        if build is not None and build.done.is_set():
            self._build = None
            self._thread = None
            if build.error is not None:
                self.last_error = f"{type(build.error).__name__}: {build.error}"
                self._failed_at = time.monotonic()
                logger.error("HNSW build failed; exact scans keep serving: %s", self.last_error)
            elif not build.stop.is_set():
                await self._install(build)
        on = self.graph is not None or self._build is not None
        want = native.auto_on(self.settings.ann, len(exact), self.settings.ann_min_chunks, on)
        if not want:
            if on:
                logger.info("vector index at %d chunks: HNSW graph off", len(exact))
            self.reset()
            return
        if self._build is not None:
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return
        if self.graph is None:
            logger.info("vector index at %d chunks: building an HNSW graph in the background", len(exact))
            self._start(exact)
        elif self._tombstone_share() >= REBUILD_TOMBSTONES:
            logger.info("HNSW graph is %.0f%% tombstones: rebuilding it", 100 * self._tombstone_share())
            self._start(exact)

    def reset(self) -> None:
        """Drop the graph and abandon any build (the exact index was rebuilt, or the graph is off)."""
        self.graph = None
        if self._build is not None:
            self._build.stop.set()
        self._build = None
        self._thread = None

    def restore(self, graph: native.HnswIndex | None) -> None:
        """Serve ``graph`` (one saved in an index snapshot, holding the same rows as the exact index)
        instead of building one; a graph built with other ``ann_m`` / ``ann_ef_construction``
        settings is dropped, and :meth:`maintain` builds a fresh one when wanted."""
        self.reset()
        s = self.settings
        if graph is not None and (graph.m, graph.ef_construction) != (s.ann_m, s.ann_ef_construction):
            logger.info("saved HNSW graph was built with other settings: building a fresh one")
            graph = None
        self.graph = graph

    def close(self, timeout: float = 5.0) -> None:
        """Stop a build in progress and wait for its thread (up to ``timeout`` seconds); a graph
        that serves stays (the index snapshot saves it)."""
        thread = self._thread
        if self._build is not None:
            self._build.stop.set()
        self._build = None
        self._thread = None
        if thread is not None:
            thread.join(timeout)

    async def wait_built(self, limit_s: float) -> bool:
        """Wait (without blocking the loop) until a build in progress finishes; test and bench helper."""
        build = self._build
        if build is None:
            return True
        return await anyio.to_thread.run_sync(build.done.wait, limit_s)

    # ---- building ------------------------------------------------------------------------------

    def _tombstone_share(self) -> float:
        graph = self.graph
        if graph is None:
            return 0.0
        nodes = len(graph) + graph.tombstones
        return graph.tombstones / nodes if nodes else 0.0

    def _start(self, exact: native.VectorIndex) -> None:
        s = self.settings
        graph = native.HnswIndex(
            self.dim,
            "cosine",
            m=s.ann_m,
            ef_construction=s.ann_ef_construction,
            seed=self.builds,
            keep_rows=False,
        )
        build = _Build(graph)
        self._build = build
        self.builds += 1
        # The snapshot is taken in the thread: changes logged from now on are replayed over it. A
        # change that lands before the snapshot is then in both, which replays harmlessly (an upsert of
        # the same row, a removal of an id already gone).
        self._thread = threading.Thread(target=self._run, args=(build, exact), name="hnsw-build", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(build: _Build, exact: native.VectorIndex) -> None:
        try:
            ids, rows = exact.snapshot()
            build.rows = len(ids)
            for start in range(0, len(ids), BUILD_BATCH):
                if build.stop.is_set():
                    return
                build.graph.add(ids[start : start + BUILD_BATCH], rows[start : start + BUILD_BATCH])
        except BaseException as exc:  # reported by maintain() on the loop; the thread must not die silently
            build.error = exc
        finally:
            build.done.set()

    async def _install(self, build: _Build) -> None:
        log_rows = sum(len(ids) for ids, _ in build.log)

        def replay() -> None:
            for ids, rows in build.log:
                if rows is None:
                    build.graph.remove(ids)
                else:
                    build.graph.add(ids, rows)

        if log_rows > REPLAY_INLINE_ROWS:
            await anyio.to_thread.run_sync(replay)
        else:
            replay()
        self.graph = build.graph
        self.build_seconds = time.perf_counter() - build.started
        self.last_error = None
        self._failed_at = None
        logger.info(
            "HNSW graph ready: %d rows in %.1f s (%d changes replayed)",
            len(build.graph),
            self.build_seconds,
            log_rows,
        )
