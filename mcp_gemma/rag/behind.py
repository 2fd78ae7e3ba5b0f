"""Write-behind for one-document ingests: answer the call once the document is validated, chunked
and recorded in Redis, and embed and write it together with the calls around it.

Why: a client that ingests documents one call at a time (the common pattern) made the embedder run
one small forward pass per call, and waited for each. Embedding a document's two chunks in their own
pass costs ~1.4× what they cost in a batch on this machine's two cores (the pass is too small to
split well), and the call's round trip came on top. Here calls only queue their document; one writer
task takes everything queued at once, embeds it in batches and writes it in one pass of transactions
(:meth:`IngestPipeline._write_group`), while the next calls queue behind it.

What a client sees does not change:

- **The answer** (created / replaced / unchanged, chunks, characters, hash) is what the write will
  do: the status comes from the queued entry of the same document, else from Redis, as before.
- **Read your writes:** every read and every other write of the knowledge base first waits until
  what was queued before it is written (:meth:`WriteBehind.settled`).
- **Nothing acknowledged is lost:** each queued document is recorded in Redis (one hash field per
  document, ``Keys.ingest_queue``) before the call answers, and dropped from there once written. A
  process that stops first (crash, kill) leaves them, and the next process to use the collection
  writes them (unless the document changed since). A clean shutdown writes the queue first.
- **Order:** a queued document's ``updated_at`` is the time it was acknowledged, and it is written
  only over an older version (checked in the write's transaction): when another replica was sent
  the same document later, that version stands, whichever is written last.
- **Failures:** while Redis is unreachable the writer retries with backoff, and a read or ingest
  that waits for it fails with a clear error instead of hanging; an error that retrying cannot mend
  is logged and counted in ``health_check``, and the documents stay recorded for the next start.

The queue is bounded (``rag.write_behind_documents`` documents; a call past that waits for the
writer), and a document that arrives while an older version of itself is still queued replaces that
version in place. Other replicas see a document once it is written, as they see every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_gemma.errors import QuotaExceededError, StoreUnavailableError
from mcp_gemma.rag.chunking import Chunk

logger = logging.getLogger(__name__)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
ALIVE_MS = 10_000  # how long a process's "alive" mark lasts; refreshed at each call and each write


@dataclass(frozen=True, slots=True)
class Record:
    """An acknowledged ingest as recorded in Redis (one field of ``Keys.ingest_queue``, by document
    id): what a later process needs to write it, and who was to write it when."""

    text: str
    metadata: dict[str, Any] | None
    source: str
    meta: str  # the metadata's canonical JSON
    digest: str  # content hash
    at: float  # when it was acknowledged (time.time())
    owner: str  # the process that acknowledged it (its "alive" mark tells whether it still will)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "text": self.text,
                "metadata": self.metadata,
                "source": self.source,
                "meta": self.meta,
                "hash": self.digest,
                "at": self.at,
                "owner": self.owner,
            },
            ensure_ascii=False,
        ).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        """The record ``raw`` holds; :class:`ValueError` says why it cannot be one."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        for name in ("text", "meta", "hash", "owner"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"{name!r} is missing or not a string")
        at = data.get("at")
        if not isinstance(at, (int, float)) or isinstance(at, bool):
            raise ValueError("'at' is missing or not a number")
        metadata, source = data.get("metadata"), data.get("source")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("'metadata' is not an object")
        return cls(
            text=data["text"],
            metadata=metadata,
            source=source if isinstance(source, str) and source else "text",
            meta=data["meta"],
            digest=data["hash"],
            at=float(at),
            owner=data["owner"],
        )


@dataclass(slots=True)
class Queued:
    """One acknowledged document waiting to be written."""

    doc_id: str
    rec: Record
    raw: bytes  # ``rec`` as recorded in Redis's queue hash (what marks it written when dropped)
    chunks: list[Chunk]
    created: bool  # no version of the document was stored or queued when it was acknowledged
    seq: int = 0


class WriteBehind:
    """The bounded queue of acknowledged one-document ingests and the task that writes it."""

    def __init__(
        self,
        depth: int,
        write: Callable[[Sequence[Queued]], Awaitable[None]],
        record: Callable[[str, bytes, str, int], Awaitable[None]],
        alive: Callable[[str, int], Awaitable[None]],
        forget: Callable[[Sequence[tuple[str, bytes]], str | None], Awaitable[None]],
    ) -> None:
        self.depth = depth
        self.owner = uuid.uuid4().hex  # this process, in its records and its "alive" mark
        self._alive = alive
        self._write = write
        self._record = record
        self._forget = forget
        self._queue: OrderedDict[str, Queued] = OrderedDict()  # not taken by the writer yet
        self._flight: dict[str, Queued] = {}  # being written now
        self._seq = 0
        self._changed = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.error: Exception | None = None  # the writer's last failure, until a write succeeds
        self.failures = 0  # writes that failed (retried or given up)
        self.abandoned = 0  # documents given up on (still recorded in Redis for the next start)
        self.written = 0  # documents written

    # ---- what the ingest path asks ------------------------------------------------------------

    def pending(self, doc_id: str) -> Queued | None:
        """The newest queued (or in-flight) version of ``doc_id``."""
        return self._queue.get(doc_id) or self._flight.get(doc_id)

    def pending_created(self) -> int:
        """Queued documents that are new to the knowledge base (the document quota counts them)."""
        return sum(q.created for q in self._queue.values()) + sum(q.created for q in self._flight.values())

    def waiting(self, doc_id: str) -> bool:
        """Whether a version of ``doc_id`` is queued and not yet taken by the writer."""
        return doc_id in self._queue

    def __len__(self) -> int:
        return len(self._queue) + len(self._flight)

    async def put(self, entry: Queued, *, recorded: bool = False) -> None:
        """Record ``entry`` in Redis (unless ``recorded``: left by an earlier process) and queue it;
        waits while the queue is full."""
        async with self._changed:
            while len(self._queue) >= self.depth and entry.doc_id not in self._queue:
                self._raise_if_failing(len(self))
                await self._changed.wait()
        # recorded and queued together: a caller cancelled in between would leave a record that no
        # queue here writes (and that other replicas wait for while this process lives)
        await asyncio.shield(self._record_and_queue(entry, recorded))

    async def _record_and_queue(self, entry: Queued, recorded: bool) -> None:
        if not recorded:
            await self._record(entry.doc_id, entry.raw, self.owner, ALIVE_MS)
        async with self._changed:
            if self._closing:
                raise StoreUnavailableError("the server is shutting down; send the document again")
            old = self._queue.get(entry.doc_id)
            if old is not None:
                entry.seq = old.seq  # the newer version takes the old one's place (and its turn)
            else:
                self._seq += 1
                entry.seq = self._seq
            self._queue[entry.doc_id] = entry
            self._changed.notify_all()
        if self._writer is None or self._writer.done():
            # a fresh context: the writer must not carry the first caller's call id (redis_guard)
            self._writer = asyncio.get_running_loop().create_task(
                self._run(), name="ingest write-behind", context=contextvars.Context()
            )

    async def settled(self) -> None:
        """Return once everything queued before this call is written; raise
        :class:`StoreUnavailableError` if the writer fails twice meanwhile (it keeps retrying; one
        failure may be an attempt that began before Redis came back)."""
        if not self._queue and not self._flight:
            return
        target = self._seq
        failures, abandoned = self.failures, self.abandoned
        async with self._changed:
            while True:
                left = [q for q in (*self._queue.values(), *self._flight.values()) if q.seq <= target]
                if self.failures >= failures + 2 or self.abandoned != abandoned:
                    # failing since (or given up on some): say so rather than wait, or hide it
                    self._raise_if_failing(len(left))
                    failures, abandoned = self.failures, self.abandoned
                if not left:
                    return
                if self._writer is None or self._writer.done():  # given up (closed): nothing to wait on
                    self._raise_if_failing(len(left))
                    return
                await self._changed.wait()

    def _raise_if_failing(self, waiting: int) -> None:
        if self.error is not None:
            raise StoreUnavailableError(
                f"{waiting} acknowledged document(s) are waiting to be written, and the last write "
                f"failed: {self.error}. They are kept and retried; try again shortly"
            ) from self.error

    # ---- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            async with self._changed:
                while not self._queue:
                    if self._closing:
                        return
                    await self._changed.wait()
                self._flight = dict(self._queue)
                self._queue.clear()
                self._changed.notify_all()  # room in the queue
            group = sorted(self._flight.values(), key=lambda q: q.seq)
            try:
                await self._alive(self.owner, ALIVE_MS)
                await self._write(group)
            except (StoreUnavailableError, QuotaExceededError) as exc:  # Redis down or full: retry
                await self._failed(exc, retry=group)
                logger.warning("write-behind: %d documents not written yet (%s); retrying", len(group), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except asyncio.CancelledError:
                self._flight = {}  # still recorded in Redis: the next start writes them
                raise
            except Exception as exc:  # retrying will not mend it (a bug, a full Redis)
                logger.exception(
                    "write-behind: %d documents were not written (%s); they stay recorded in Redis and "
                    "the next start writes them: %s",
                    len(group),
                    ", ".join(q.doc_id for q in group[:10]),
                    exc,
                )
                self.abandoned += len(group)
                await self._failed(exc, retry=[])
                continue
            delay = RETRY_FIRST_S
            self.error = None
            self.written += len(group)
            try:  # and this process's "alive" mark once nothing more waits
                await self._forget([(q.doc_id, q.raw) for q in group], None if self._queue else self.owner)
            except Exception as exc:  # the next start finds them written and drops them
                logger.warning("write-behind: written documents not yet unrecorded: %s", exc)
            async with self._changed:
                self._flight = {}
                self._changed.notify_all()

    async def _failed(self, exc: Exception, *, retry: list[Queued]) -> None:
        """Note a failed write; ``retry`` goes back to the front of the queue (behind nothing), unless
        a newer version of the same document was queued meanwhile."""
        async with self._changed:
            self.error = exc
            self.failures += 1
            back = [q for q in retry if q.doc_id not in self._queue]
            for q in retry:  # a newer version queued meanwhile keeps the older one's turn
                newer = self._queue.get(q.doc_id)
                if newer is not None:
                    newer.seq = min(newer.seq, q.seq)
            self._queue = OrderedDict([(q.doc_id, q) for q in back] + list(self._queue.items()))
            self._flight = {}
            self._changed.notify_all()

    async def close(self, timeout_s: float) -> None:
        """Write what is queued (up to ``timeout_s``), then stop the writer; what is left stays
        recorded in Redis for the next start."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(writer), timeout_s)
        while not writer.done():
            # a cancel that lands inside a Redis call can be swallowed there (asyncio.wait_for before
            # Python 3.12): ask again until the task ends
            writer.cancel()
            await asyncio.wait({writer}, timeout=1.0)
        if len(self):
            logger.warning(
                "write-behind: %d acknowledged documents not written at shutdown; they stay recorded "
                "in Redis and the next start writes them",
                len(self),
            )
