"""Documents and chunks in Redis, the source of truth.

Layout (all keys from :class:`~mcp_gemma.store.keys.Keys`, one hash tag per namespace):

* ``doc:{id}`` hash — ``text``, ``metadata`` (canonical JSON), ``content_hash``, ``chunk_ids``
  (comma-separated, in order), ``chars``, ``created_at``, ``updated_at``;
* ``chunk:{n}`` hash — ``doc``, ``ord``, ``start``, ``end``, ``text``, ``emb`` (float32 bytes);
* ``docs`` sorted set — document ids by creation time;
* ``changes`` stream — one entry per document change: ``op`` (upsert | delete), ``doc``, ``add`` and
  ``del`` (chunk ids), written in the same MULTI/EXEC as the change itself.

A group of documents is written in one WATCHed transaction, so each document's change (and the
stream entry that announces it) is all-or-nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.exceptions as rexc

from mcp_gemma.rag.chunking import Chunk
from mcp_gemma.store.keys import Keys
from mcp_gemma.store.redis import AnyRedis

logger = logging.getLogger(__name__)

HEAD_FIELDS = (b"content_hash", b"metadata", b"chunk_ids", b"chars", b"created_at", b"updated_at")
CHUNK_FIELDS = (b"doc", b"ord", b"start", b"end", b"text", b"emb")
READ_BATCH = 1_000
MAX_WATCH_RETRIES = 20
Vectors = npt.NDArray[np.float32]


@dataclass(slots=True)
class DocHead:
    """What the index keeps of a document: everything but its text."""

    id: str
    content_hash: str
    metadata_json: str
    chunk_ids: list[int]
    chars: int
    created_at: float
    updated_at: float


@dataclass(slots=True)
class PreparedDoc:
    """A validated, chunked and embedded document ready to be written."""

    id: str
    text: str
    metadata_json: str
    content_hash: str
    chunks: list[Chunk]
    vectors: Vectors
    source: str | None = None
    chunk_ids: list[int] = field(default_factory=list)
    # Set by an import, which keeps the exported times; otherwise the write's own clock decides.
    created_at: float | None = None
    updated_at: float | None = None


@dataclass(slots=True)
class StoredChunk:
    """A chunk as read back from Redis (or kept from a local write)."""

    chunk_id: int
    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    vector: Vectors | None


@dataclass(slots=True)
class Change:
    """One entry of the change stream."""

    stream_id: str
    op: str
    doc_id: str
    added: list[int]
    removed: list[int]


@dataclass(slots=True)
class WriteOutcome:
    """What one document's write did."""

    doc: PreparedDoc
    status: str
    head: DocHead
    removed: list[int]
    stream_id: str


def _ids(raw: bytes | str | None) -> list[int]:
    if not raw:
        return []
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [int(x) for x in text.split(",") if x]


def _join(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids)


def head_from(doc_id: str, values: Sequence[bytes | None]) -> DocHead | None:
    """A :class:`DocHead` from an HMGET of :data:`HEAD_FIELDS`; ``None`` when the document is gone."""
    content_hash, meta, chunk_ids, chars, created, updated = values
    if content_hash is None:
        return None
    return DocHead(
        id=doc_id,
        content_hash=content_hash.decode(),
        metadata_json=(meta or b"{}").decode(),
        chunk_ids=_ids(chunk_ids),
        chars=int(chars or 0),
        created_at=float(created or 0),
        updated_at=float(updated or 0),
    )


def chunk_from(chunk_id: int, values: Sequence[bytes | None], dim: int | None) -> StoredChunk | None:
    """A :class:`StoredChunk` from an HMGET of :data:`CHUNK_FIELDS` (``dim=None`` skips the vector)."""
    doc, ordinal, start, end, text, emb = values
    if doc is None or text is None:
        return None
    vector = None
    if dim is not None and emb is not None and len(emb) == dim * 4:
        vector = np.frombuffer(emb, dtype=np.float32)
    return StoredChunk(
        chunk_id, doc.decode(), int(ordinal or 0), int(start or 0), int(end or 0), text.decode(), vector
    )


class DocStore:
    """Reads and writes documents, chunks and change entries in Redis."""

    def __init__(self, client: AnyRedis, keys: Keys, change_log_max: int) -> None:
        # redis-py's return types are unions of every decode mode; with decode_responses=False
        # every reply here is bytes, so the client is used untyped.
        self.client: Any = client
        self.keys = keys
        self.change_log_max = change_log_max

    async def reserve_chunk_ids(self, n: int) -> list[int]:
        """``n`` fresh integer chunk ids (a Redis counter, so every replica agrees)."""
        if n == 0:
            return []
        last = int(await self.client.incrby(self.keys.chunk_seq(), n))
        return list(range(last - n + 1, last + 1))

    async def heads(self, doc_ids: Sequence[str]) -> list[DocHead | None]:
        """The heads of ``doc_ids`` (``None`` for unknown ones), pipelined."""
        out: list[DocHead | None] = []
        for start in range(0, len(doc_ids), READ_BATCH):
            part = doc_ids[start : start + READ_BATCH]
            async with self.client.pipeline(transaction=False) as pipe:
                for doc_id in part:
                    pipe.hmget(self.keys.doc(doc_id), HEAD_FIELDS)
                rows = await pipe.execute()
            out.extend(head_from(d, r) for d, r in zip(part, rows, strict=True))
        return out

    async def head(self, doc_id: str) -> DocHead | None:
        """One document's head."""
        return (await self.heads([doc_id]))[0]

    async def text(self, doc_id: str) -> str | None:
        """The full text of a document."""
        raw = await self.client.hget(self.keys.doc(doc_id), "text")
        return None if raw is None else bytes(raw).decode()

    async def chunks(self, chunk_ids: Sequence[int], dim: int | None) -> list[StoredChunk | None]:
        """Chunks by id, pipelined; ``dim=None`` leaves the embedding out."""
        fields = CHUNK_FIELDS if dim is not None else (*CHUNK_FIELDS[:5], b"__none__")
        out: list[StoredChunk | None] = []
        for start in range(0, len(chunk_ids), READ_BATCH):
            part = chunk_ids[start : start + READ_BATCH]
            async with self.client.pipeline(transaction=False) as pipe:
                for cid in part:
                    pipe.hmget(self.keys.chunk(cid), fields)
                rows = await pipe.execute()
            out.extend(chunk_from(c, r, dim) for c, r in zip(part, rows, strict=True))
        return out

    async def count(self) -> int:
        """How many documents are stored."""
        return int(await self.client.zcard(self.keys.docs()))

    async def all_doc_ids(self) -> list[str]:
        """Every document id, oldest first."""
        raw = await self.client.zrange(self.keys.docs(), 0, -1)
        return [bytes(r).decode() for r in raw]

    async def last_change_id(self) -> str:
        """Id of the newest stream entry (``0-0`` when there is none)."""
        rows = await self.client.xrevrange(self.keys.changes(), count=1)
        return bytes(rows[0][0]).decode() if rows else "0-0"

    async def first_change_id(self) -> str | None:
        """Id of the oldest entry still in the (trimmed) stream."""
        rows = await self.client.xrange(self.keys.changes(), count=1)
        return bytes(rows[0][0]).decode() if rows else None

    async def changes_after(self, last_id: str, count: int = 1_000) -> list[Change]:
        """Stream entries newer than ``last_id``."""
        rows = await self.client.xrange(self.keys.changes(), min=f"({last_id}", count=count)
        out = []
        for sid, data in rows:
            out.append(
                Change(
                    stream_id=bytes(sid).decode(),
                    op=data.get(b"op", b"").decode(),
                    doc_id=data.get(b"doc", b"").decode(),
                    added=_ids(data.get(b"add")),
                    removed=_ids(data.get(b"del")),
                )
            )
        return out

    async def write(self, docs: Sequence[PreparedDoc]) -> list[WriteOutcome]:
        """Write ``docs`` (chunk ids already assigned) in one WATCHed MULTI/EXEC, replacing old chunks."""
        keys = [self.keys.doc(d.id) for d in docs]
        for _attempt in range(MAX_WATCH_RETRIES):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*keys)
                    olds: list[DocHead | None] = []
                    for doc, key in zip(docs, keys, strict=True):
                        olds.append(head_from(doc.id, await pipe.hmget(key, HEAD_FIELDS)))
                    pipe.multi()
                    outcomes = self._queue_writes(pipe, docs, olds)
                    results = await pipe.execute()
                except rexc.WatchError:
                    logger.debug("documents changed during ingest; retrying the transaction")
                    continue
            stream_ids = [r.decode() for r in results if isinstance(r, bytes)]  # only XADD answers bytes
            for outcome, sid in zip(outcomes, stream_ids, strict=True):
                outcome.stream_id = sid
            return outcomes
        raise rexc.WatchError("documents kept changing during ingest; try again")

    def _queue_writes(
        self, pipe: Any, docs: Sequence[PreparedDoc], olds: Sequence[DocHead | None]
    ) -> list[WriteOutcome]:
        now = time.time()
        outcomes = []
        for doc, old in zip(docs, olds, strict=True):
            removed = old.chunk_ids if old else []
            created = doc.created_at if doc.created_at is not None else old.created_at if old else now
            updated = doc.updated_at if doc.updated_at is not None else now
            for cid in removed:
                pipe.delete(self.keys.chunk(cid))
            for cid, chunk, vec in zip(doc.chunk_ids, doc.chunks, doc.vectors, strict=True):
                pipe.hset(
                    self.keys.chunk(cid),
                    mapping={
                        "doc": doc.id,
                        "ord": chunk.ordinal,
                        "start": chunk.start,
                        "end": chunk.end,
                        "text": chunk.text,
                        "emb": np.ascontiguousarray(vec, dtype=np.float32).tobytes(),
                    },
                )
            head = DocHead(
                doc.id,
                doc.content_hash,
                doc.metadata_json,
                list(doc.chunk_ids),
                len(doc.text),
                created,
                updated,
            )
            pipe.hset(
                self.keys.doc(doc.id),
                mapping={
                    "text": doc.text,
                    "metadata": doc.metadata_json,
                    "content_hash": doc.content_hash,
                    "chunk_ids": _join(doc.chunk_ids),
                    "chars": len(doc.text),
                    "created_at": repr(created),
                    "updated_at": repr(updated),
                    "source": doc.source or "",
                },
            )
            pipe.zadd(self.keys.docs(), {doc.id: created})
            pipe.xadd(
                self.keys.changes(),
                {"op": "upsert", "doc": doc.id, "add": _join(doc.chunk_ids), "del": _join(removed)},
                maxlen=self.change_log_max,
                approximate=True,
            )
            outcomes.append(WriteOutcome(doc, "replaced" if old else "created", head, list(removed), ""))
        return outcomes

    async def delete(self, doc_id: str) -> tuple[DocHead, str] | None:
        """Remove a document, its chunks and its listing entry atomically; ``None`` if it did not exist."""
        key = self.keys.doc(doc_id)
        for _attempt in range(MAX_WATCH_RETRIES):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    old = head_from(doc_id, await pipe.hmget(key, HEAD_FIELDS))
                    if old is None:
                        return None
                    pipe.multi()
                    pipe.delete(key, *(self.keys.chunk(c) for c in old.chunk_ids))
                    pipe.zrem(self.keys.docs(), doc_id)
                    pipe.xadd(
                        self.keys.changes(),
                        {"op": "delete", "doc": doc_id, "add": "", "del": _join(old.chunk_ids)},
                        maxlen=self.change_log_max,
                        approximate=True,
                    )
                    results = await pipe.execute()
                except rexc.WatchError:
                    continue
            return old, bytes(results[-1]).decode()
        raise rexc.WatchError("the document kept changing during delete; try again")
