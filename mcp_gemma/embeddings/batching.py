"""Dynamic batching of small embedding calls, behind a bounded queue.

Concurrent tool calls (``store_memory``, a search's query) each embed a text or two. Run one by
one, each waits for every forward pass before it; here they join a queue, and one forward pass
takes whatever is queued (up to ``batch_size`` texts; when others are already waiting, after a
short wait for more to arrive). No extra task runs the passes: the first waiting caller drives
them and, when its own texts are done, hands the queue to the next waiting caller. Past
``max_texts`` waiting texts a call is refused with :class:`ServerBusyError` at once instead of
queueing behind minutes of work.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import numpy as np

from mcp_gemma.embeddings.base import Vectors
from mcp_gemma.errors import ServerBusyError


@dataclass(eq=False)
class _Request:
    """One caller's texts in the queue."""

    texts: list[str]
    wake: anyio.Event = field(default_factory=anyio.Event)
    result: Vectors | None = None
    error: Exception | None = None
    taken: bool = False  # in a forward pass: its texts are no longer droppable


class EmbeddingBatcher:
    """Coalesces concurrent small ``embed`` calls into shared forward passes (event-loop side)."""

    def __init__(
        self, run: Callable[[list[str]], Vectors], *, batch_size: int, wait_s: float, max_texts: int
    ) -> None:
        self._run = run  # the forward pass, called in a worker thread
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.max_texts = max_texts
        self._queue: deque[_Request] = deque()
        self._queued = 0  # texts in the queue, not yet in a pass
        self.pending = 0  # texts admitted and not finished (queued, in a pass, or in a large call)
        self._driving = False
        self._seconds_per_text = 0.005  # a running estimate, for the retry hint
        self.passes = 0
        self.requests = 0

    def _admit(self, count: int) -> None:
        """Refuse ``count`` more texts when the queue would pass its bound (one call alone is let in)."""
        if self.pending and self.pending + count > self.max_texts:
            wait = max(1, math.ceil(self.pending * self._seconds_per_text))
            raise ServerBusyError(
                f"server busy: {self.pending} texts are waiting to be embedded; retry after {wait} s"
            )
        self.pending += count

    @contextmanager
    def reserved(self, count: int) -> Iterator[None]:
        """Count a call that embeds on its own (a large batch) against the queue bound while it runs."""
        self._admit(count)
        try:
            yield
        finally:
            self.pending -= count

    async def embed(self, texts: list[str]) -> Vectors:
        """Unit vectors of ``texts``, computed in a forward pass shared with concurrent callers.

        Cancelled while still queued, the texts leave the queue; once their pass has started it
        finishes for the other callers in it.
        """
        self._admit(len(texts))
        req = _Request(texts)
        self._queue.append(req)
        self._queued += len(texts)
        self.requests += 1
        try:
            while True:
                if req.wake.is_set():
                    req.wake = anyio.Event()
                if req.result is not None:
                    return req.result
                if req.error is not None:
                    raise req.error
                if not self._driving:
                    await self._drive(req)
                else:
                    await req.wake.wait()
        finally:
            if not req.taken:
                self._queue.remove(req)
                self._queued -= len(texts)
                self.pending -= len(texts)
                if not self._driving and self._queue:
                    self._queue[0].wake.set()  # it may have been handed the queue just now

    async def _drive(self, own: _Request) -> None:
        """Run forward passes over the queue until ``own`` is done, then hand over to the next caller."""
        self._driving = True
        try:
            while own.result is None and own.error is None:
                if len(self._queue) > 1 and self._queued < self.batch_size and self.wait_s > 0:
                    # Others are already waiting: give the callers arriving with them a moment to join
                    # this pass. A caller alone goes at once (no added latency when the server is idle);
                    # under load the queue fills while the previous pass runs anyway.
                    await anyio.sleep(self.wait_s)
                batch = self._take()
                texts = [t for r in batch for t in r.texts]
                started = time.perf_counter()
                try:
                    # not abandoned on cancel: the other callers in this pass need its result
                    vectors = await anyio.to_thread.run_sync(self._run, texts)
                except Exception as exc:
                    for r in batch:
                        r.error = exc
                else:
                    spent = (time.perf_counter() - started) / max(1, len(texts))
                    self._seconds_per_text = 0.8 * self._seconds_per_text + 0.2 * spent
                    at = 0
                    for r in batch:
                        r.result = np.ascontiguousarray(vectors[at : at + len(r.texts)])
                        at += len(r.texts)
                finally:
                    self.pending -= len(texts)
                    self.passes += 1
                    for r in batch:
                        if r is not own:
                            r.wake.set()
        finally:
            self._driving = False
            if self._queue:
                self._queue[0].wake.set()

    def _take(self) -> list[_Request]:
        """Whole requests from the head of the queue, up to ``batch_size`` texts (at least one)."""
        batch: list[_Request] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self.batch_size):
            req = self._queue.popleft()
            req.taken = True
            self._queued -= len(req.texts)
            size += len(req.texts)
            batch.append(req)
        return batch
