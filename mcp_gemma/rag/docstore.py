"""Documents and chunks in Redis, the source of truth.

Layout (all keys from :class:`~mcp_gemma.store.keys.Keys`; a document and everything about it
live in the slot group of its id, so every transaction below touches one slot):

* ``doc:{id}`` hash — ``text``, ``metadata`` (canonical JSON), ``content_hash``, ``chunk_ids``
  (comma-separated, in order), ``chars``, ``created_at``, ``updated_at``;
* ``chunk:{n}`` hash — ``doc``, ``ord``, ``start``, ``end``, ``text``, ``emb`` (float32 bytes); the
  chunk id ``n`` carries its group (``n % SLOT_GROUPS``);
* ``docs`` sorted set per group — document ids by creation time;
* ``changes`` stream per group — one entry per document change: ``op`` (upsert | delete), ``doc``,
  ``add`` and ``del`` (chunk ids), written in the same MULTI/EXEC as the change itself.

The documents of a write that share a group go in one WATCHed transaction, so each document's
change (and the stream entry that announces it) is all-or-nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.exceptions as rexc

from mcp_gemma.errors import ConfigError
from mcp_gemma.rag.chunking import Chunk
from mcp_gemma.store.keys import SLOT_GROUPS, Keys, group_of
from mcp_gemma.store.redis import AnyRedis

logger = logging.getLogger(__name__)

HEAD_FIELDS = (b"content_hash", b"metadata", b"chunk_ids", b"chars", b"created_at", b"updated_at")
CHUNK_FIELDS = (b"doc", b"ord", b"start", b"end", b"text", b"emb")
READ_BATCH = 1_000
# The documents of every group counted on the server: one command instead of SLOT_GROUPS ZCARDs (whose
# packing and parsing cost more than the round trip); for a client whose keys all reach one node.
COUNT_DOCS = """
local n = 0
for i = 1, #KEYS do n = n + redis.call('ZCARD', KEYS[i]) end
return n
"""
# drop queued-ingest entries that still hold the value written for them (a newer entry for the same
# document, written meanwhile, stays); KEYS[2], when given, is a writer's "alive" mark to remove
DROP_QUEUED = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
if #KEYS > 1 then redis.call('DEL', KEYS[2]) end
return n
"""
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
    # Set by an import, which keeps the exported times, and by the write-behind queue (its
    # acknowledgement time); otherwise the write's own clock decides.
    created_at: float | None = None
    updated_at: float | None = None
    # written only when the stored version (read in the write's transaction) is older than
    # ``updated_at``: a write-behind entry that a later-acknowledged write of the document overtook
    # is left out (its outcome says "overtaken")
    only_over_older: bool = False


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

    group: int
    stream_id: str
    op: str
    doc_id: str
    added: list[int]
    removed: list[int]


@dataclass(slots=True)
class WriteOutcome:
    """What one document's write did: ``status`` created, replaced, or overtaken (nothing written;
    ``head`` is the stored, newer version's, and there is no change entry)."""

    doc: PreparedDoc
    status: str
    head: DocHead
    removed: list[int]
    group: int
    stream_id: str
    epoch: int = 0
    """The change counter as this write's bump left it (see :meth:`DocStore.write`)."""


Positions = dict[int, str]
"""The last change-stream entry seen, per slot group (``0-0``: none)."""


def stream_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _ids(raw: bytes | str | None) -> list[int]:
    if not raw:
        return []
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [int(x) for x in text.split(",") if x]


def _join(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids)


def _overtaking(doc: PreparedDoc, stored: DocHead | None) -> DocHead | None:
    """``stored`` when it is a version ``doc`` must not overwrite (see ``PreparedDoc.only_over_older``)."""
    if doc.only_over_older and stored is not None and doc.updated_at is not None:
        return stored if stored.updated_at >= doc.updated_at else None
    return None


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

    def __init__(
        self,
        client: AnyRedis,
        keys: Keys,
        change_log_max: int,
        confirm: Callable[[str], Awaitable[None]] | None = None,
        *,
        one_node: bool = False,
    ) -> None:
        # redis-py's return types are unions of every decode mode; with decode_responses=False
        # every reply here is bytes, so the client is used untyped.
        self.client: Any = client
        self.keys = keys
        # the setting bounds the whole log: each of the SLOT_GROUPS streams keeps its share
        self.change_log_max = max(change_log_max // SLOT_GROUPS, 100)
        self._confirm = confirm  # waits for replicas (redis_min_replicas_ack) before a write counts
        self._mode_checked = False
        # every key on one node (not a cluster, or a one-slot collection): multi-key scripts work
        self._one_node = one_node
        self._count_docs = client.register_script(COUNT_DOCS) if one_node else None
        # its keys (the queue and a writer's alive mark) share the namespace's hash tag: fine on a cluster
        self._drop_queued = client.register_script(DROP_QUEUED)

    async def check_slot_mode(self) -> None:
        """Refuse to use a collection whose keys were written in the other slot mode (one slot vs
        spread, ``rag.one_slot_collections``): its data would be invisible and new writes would mix
        with it. Records the mode on first use; later calls cost nothing."""
        if self._mode_checked:
            return
        meta = self.keys.meta()
        recorded = await self.client.hget(meta, "slots")
        mode = self.keys.slot_mode
        if recorded is None:
            other = Keys(self.keys.ns, one_slot=not self.keys.one_slot)
            async with self.client.pipeline(transaction=False) as pipe:
                for g in range(SLOT_GROUPS):
                    pipe.exists(other.docs(g))
                found = any(await pipe.execute())
            if not found:
                await self.client.hsetnx(meta, "slots", mode)
            recorded = await self.client.hget(meta, "slots") or other.slot_mode.encode()
        if recorded.decode() != mode:
            listed = "lists" if self.keys.one_slot else "no longer lists"
            raise ConfigError(
                f"the documents of key namespace {self.keys.ns!r} were stored with slot mode "
                f"{recorded.decode()!r}, but rag.one_slot_collections now {listed} it (mode {mode!r}): "
                "restore the setting, or delete the collection's documents before changing it"
            )
        self._mode_checked = True

    async def reserve_chunk_ids(self, wanted: Sequence[tuple[str, int]]) -> list[list[int]]:
        """Fresh chunk ids for each ``(doc id, count)``, from the counter of the document's group (so
        every replica agrees, and each id names its group)."""
        await self.check_slot_mode()
        per_group: dict[int, int] = {}
        for doc_id, n in wanted:
            g = group_of(doc_id)
            per_group[g] = per_group.get(g, 0) + n
        groups = [g for g, n in per_group.items() if n]
        if not groups:
            return [[] for _ in wanted]
        async with self.client.pipeline(transaction=False) as pipe:
            for g in groups:
                pipe.incrby(self.keys.chunk_seq(g), per_group[g])
            lasts = await pipe.execute()
        next_seq = {g: int(last) - per_group[g] + 1 for g, last in zip(groups, lasts, strict=True)}
        out = []
        for doc_id, n in wanted:
            g = group_of(doc_id)
            first = next_seq.get(g, 0)
            out.append([seq * SLOT_GROUPS + g for seq in range(first, first + n)])
            next_seq[g] = first + n
        return out

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

    async def queue_put(self, doc_id: str, entry: bytes, owner: str, alive_ms: int) -> None:
        """Record an acknowledged ingest of ``doc_id`` before it is written (see
        :mod:`mcp_gemma.rag.behind`), a newer entry for the same document replacing it, and mark
        ``owner`` (the process that will write it) alive for ``alive_ms``."""
        async with self.client.pipeline(transaction=False) as pipe:  # one slot: the namespace's tag
            pipe.hset(self.keys.ingest_queue(), doc_id, entry)
            pipe.set(self.keys.ingest_owner(owner), b"1", px=alive_ms)
            await pipe.execute()
        if self._confirm is not None:  # acknowledged means held by redis_min_replicas_ack replicas too
            await self._confirm(self.keys.ingest_queue())

    async def queue_alive(self, owner: str, alive_ms: int) -> None:
        """Keep ``owner`` marked alive while it writes its queue."""
        await self.client.set(self.keys.ingest_owner(owner), b"1", px=alive_ms)

    async def queue_size(self) -> int:
        """How many recorded ingests wait to be written, by every process."""
        return int(await self.client.hlen(self.keys.ingest_queue()))

    async def queue_entries(self, doc_ids: Sequence[str] | None = None) -> dict[str, bytes]:
        """The recorded, not yet written ingests (of ``doc_ids`` only, when given), by document id."""
        if doc_ids is None:
            raw = await self.client.hgetall(self.keys.ingest_queue())
            return {k.decode("utf-8"): v for k, v in raw.items()}
        if not doc_ids:
            return {}
        values = await self.client.hmget(self.keys.ingest_queue(), list(doc_ids))
        return {d: v for d, v in zip(doc_ids, values, strict=True) if v is not None}

    async def owners_alive(self, owners: Sequence[str]) -> set[str]:
        """Which of ``owners`` are marked alive."""
        if not owners:
            return set()
        async with self.client.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.exists(self.keys.ingest_owner(owner))
            found = await pipe.execute()
        return {o for o, n in zip(owners, found, strict=True) if n}

    async def queue_drop(self, entries: Sequence[tuple[str, bytes]], owner: str | None = None) -> None:
        """Forget recorded ingests once written, each only while it is still the recorded entry; and
        ``owner``'s "alive" mark, when given (its queue is empty)."""
        if entries or owner is not None:
            keys = [self.keys.ingest_queue()] + ([self.keys.ingest_owner(owner)] if owner else [])
            await self._drop_queued(keys=keys, args=[x for pair in entries for x in pair])

    async def head(self, doc_id: str) -> DocHead | None:
        """One document's head."""
        return (await self.heads([doc_id]))[0]

    async def head_and_count(self, doc_id: str) -> tuple[DocHead | None, int]:
        """One document's head and :meth:`count`, in one round trip on one node."""
        if self._count_docs is None:  # a cluster: the listings are spread over its nodes
            return await self.head(doc_id), await self.count()
        listings = [self.keys.docs(g) for g in range(SLOT_GROUPS)]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hmget(self.keys.doc(doc_id), HEAD_FIELDS)
                pipe.evalsha(self._count_docs.sha, len(listings), *listings)
                row, n = await pipe.execute()
        except rexc.NoScriptError:  # a restarted server: count() loads the script again
            return await self.head(doc_id), await self.count()
        return head_from(doc_id, row), int(n)

    async def text(self, doc_id: str) -> str | None:
        """The full text of a document."""
        raw = await self.client.hget(self.keys.doc(doc_id), "text")
        return None if raw is None else bytes(raw).decode()

    async def chunks(
        self, chunk_ids: Sequence[int], dim: int | None, progress: Callable[[int], None] | None = None
    ) -> list[StoredChunk | None]:
        """Chunks by id, pipelined in batches; ``dim=None`` leaves the embedding out; ``progress`` hears
        how many were read after each batch."""
        fields = CHUNK_FIELDS if dim is not None else (*CHUNK_FIELDS[:5], b"__none__")
        out: list[StoredChunk | None] = []
        for start in range(0, len(chunk_ids), READ_BATCH):
            part = chunk_ids[start : start + READ_BATCH]
            async with self.client.pipeline(transaction=False) as pipe:
                for cid in part:
                    pipe.hmget(self.keys.chunk(cid), fields)
                rows = await pipe.execute()
            out.extend(chunk_from(c, r, dim) for c, r in zip(part, rows, strict=True))
            if progress is not None:
                progress(len(out))
        return out

    async def count(self) -> int:
        """How many documents are stored (every group's listing counted)."""
        if self._count_docs is not None:
            return int(await self._count_docs(keys=[self.keys.docs(g) for g in range(SLOT_GROUPS)]))
        async with self.client.pipeline(transaction=False) as pipe:
            for g in range(SLOT_GROUPS):
                pipe.zcard(self.keys.docs(g))
            return sum(int(n) for n in await pipe.execute())

    async def all_doc_ids(self, page: int = 10_000) -> list[str]:
        """Every document id, oldest first (each group's listing read in pages of ``page``)."""
        scored: list[tuple[float, str]] = []
        todo = list(range(SLOT_GROUPS))
        start = 0
        while todo:
            async with self.client.pipeline(transaction=False) as pipe:
                for g in todo:
                    pipe.zrange(self.keys.docs(g), start, start + page - 1, withscores=True)
                rows = await pipe.execute()
            full = []
            for g, part in zip(todo, rows, strict=True):
                scored.extend((float(score), bytes(m).decode()) for m, score in part)
                if len(part) == page:
                    full.append(g)
            todo, start = full, start + page
        scored.sort()
        return [doc_id for _, doc_id in scored]

    async def change_epoch(self) -> int:
        """The change counter (see :meth:`Keys.change_epoch`)."""
        return int(await self.client.get(self.keys.change_epoch()) or 0)

    async def _bump_epoch(self) -> int:
        return int(await self.client.incr(self.keys.change_epoch()))

    async def last_change_ids(self) -> Positions:
        """Id of the newest entry of every group's stream (``0-0`` when there is none)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for g in range(SLOT_GROUPS):
                pipe.xrevrange(self.keys.changes(g), count=1)
            rows = await pipe.execute()
        return {g: bytes(r[0][0]).decode() if r else "0-0" for g, r in enumerate(rows)}

    async def streams_cover(self, positions: Positions) -> bool:
        """Whether every group's stream still holds every entry after ``positions`` (nothing was
        trimmed past them, no stream deleted), so replaying from there is complete."""
        async with self.client.pipeline(transaction=False) as pipe:
            for g in range(SLOT_GROUPS):
                pipe.xinfo_stream(self.keys.changes(g))
            infos = await pipe.execute(raise_on_error=False)
        for g, info in enumerate(infos):
            seen = positions.get(g, "0-0")
            if isinstance(info, Exception):  # no such stream
                if seen != "0-0":
                    return False
                continue
            if int(info.get("entries-added", -1)) == int(info["length"]):
                continue  # never trimmed
            first = info.get("first-entry")
            if first is None or stream_key(bytes(first[0]).decode()) > stream_key(seen):
                return False
        return True

    async def first_change_ids(self) -> dict[int, str | None]:
        """Id of the oldest entry still in each group's (trimmed) stream."""
        async with self.client.pipeline(transaction=False) as pipe:
            for g in range(SLOT_GROUPS):
                pipe.xrange(self.keys.changes(g), count=1)
            rows = await pipe.execute()
        return {g: bytes(r[0][0]).decode() if r else None for g, r in enumerate(rows)}

    async def changes_after(
        self, positions: Positions, count: int = 1_000, groups: Iterable[int] | None = None
    ) -> list[Change]:
        """Entries newer than ``positions``: up to ``count`` of each group (of ``groups``, default
        all), in each group's order."""
        wanted = range(SLOT_GROUPS) if groups is None else sorted(groups)
        async with self.client.pipeline(transaction=False) as pipe:
            for g in wanted:
                pipe.xrange(self.keys.changes(g), min=f"({positions.get(g, '0-0')}", count=count)
            replies = await pipe.execute()
        out = []
        for g, rows in zip(wanted, replies, strict=True):
            for sid, data in rows:
                out.append(
                    Change(
                        group=g,
                        stream_id=bytes(sid).decode(),
                        op=data.get(b"op", b"").decode(),
                        doc_id=data.get(b"doc", b"").decode(),
                        added=_ids(data.get(b"add")),
                        removed=_ids(data.get(b"del")),
                    )
                )
        return out

    async def write(self, docs: Sequence[PreparedDoc]) -> list[WriteOutcome]:
        """Write ``docs`` (chunk ids already assigned) in WATCHed MULTI/EXEC transactions, replacing
        old chunks; the outcomes come back in the order of ``docs``. On one node every document goes
        in one transaction (a write-behind flight of 32 documents spans some 29 slot groups: one
        transaction each cost three round trips a document); on a cluster, one per slot group."""
        await self.check_slot_mode()
        if self._one_node:
            parts = [list(range(len(docs)))]
        else:
            by_group: dict[int, list[int]] = {}
            for i, doc in enumerate(docs):
                by_group.setdefault(group_of(doc.id), []).append(i)
            parts = list(by_group.values())
        outcomes: dict[int, WriteOutcome] = {}
        for members in parts:
            written = await self._write_together([docs[i] for i in members])
            outcomes.update(zip(members, written, strict=True))
        if any(o.stream_id for o in outcomes.values()):
            epoch = await self._bump_epoch()
            for outcome in outcomes.values():
                outcome.epoch = epoch
        return [outcomes[i] for i in range(len(docs))]

    async def _write_together(self, docs: Sequence[PreparedDoc]) -> list[WriteOutcome]:
        """``docs`` (on one node, or of one slot group) in one WATCHed transaction (documents
        overtaken meanwhile left out)."""
        keys = [self.keys.doc(d.id) for d in docs]
        for _attempt in range(MAX_WATCH_RETRIES):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*keys)
                    # read in one round trip on another connection: a change made after the WATCH,
                    # before or after this read, still fails the EXEC
                    olds = await self.heads([d.id for d in docs])
                    newer = [_overtaking(doc, old) for doc, old in zip(docs, olds, strict=True)]
                    pipe.multi()
                    outcomes = self._queue_writes(
                        pipe,
                        [d for d, n in zip(docs, newer, strict=True) if n is None],
                        [o for o, n in zip(olds, newer, strict=True) if n is None],
                    )
                    results = await pipe.execute() if outcomes else []
                except rexc.WatchError:
                    logger.debug("documents changed during ingest; retrying the transaction")
                    continue
            if self._confirm is not None and outcomes:
                await self._confirm(keys[0])
            stream_ids = [r.decode() for r in results if isinstance(r, bytes)]  # only XADD answers bytes
            for outcome, sid in zip(outcomes, stream_ids, strict=True):
                outcome.stream_id = sid
            written = iter(outcomes)
            return [
                next(written) if n is None else WriteOutcome(doc, "overtaken", n, [], group_of(doc.id), "")
                for doc, n in zip(docs, newer, strict=True)
            ]
        raise rexc.WatchError("documents kept changing during ingest; try again")

    def _queue_writes(
        self, pipe: Any, docs: Sequence[PreparedDoc], olds: Sequence[DocHead | None]
    ) -> list[WriteOutcome]:
        now = time.time()
        outcomes = []
        for doc, old in zip(docs, olds, strict=True):
            group = group_of(doc.id)
            removed = old.chunk_ids if old else []
            updated = doc.updated_at if doc.updated_at is not None else now
            created = doc.created_at if doc.created_at is not None else old.created_at if old else updated
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
            pipe.zadd(self.keys.docs(group), {doc.id: created})
            pipe.xadd(
                self.keys.changes(group),
                {"op": "upsert", "doc": doc.id, "add": _join(doc.chunk_ids), "del": _join(removed)},
                maxlen=self.change_log_max,
                approximate=True,
            )
            outcomes.append(
                WriteOutcome(doc, "replaced" if old else "created", head, list(removed), group, "")
            )
        return outcomes

    async def delete(self, doc_id: str) -> tuple[DocHead, int, str] | None:
        """Remove a document, its chunks and its listing entry atomically; ``None`` if it did not
        exist, else its head and the change entry (group, stream id) that announces the delete."""
        key = self.keys.doc(doc_id)
        group = group_of(doc_id)
        for _attempt in range(MAX_WATCH_RETRIES):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    old = head_from(doc_id, await pipe.hmget(key, HEAD_FIELDS))
                    if old is None:
                        return None
                    pipe.multi()
                    pipe.delete(key, *(self.keys.chunk(c) for c in old.chunk_ids))
                    pipe.zrem(self.keys.docs(group), doc_id)
                    pipe.xadd(
                        self.keys.changes(group),
                        {"op": "delete", "doc": doc_id, "add": "", "del": _join(old.chunk_ids)},
                        maxlen=self.change_log_max,
                        approximate=True,
                    )
                    results = await pipe.execute()
                except rexc.WatchError:
                    continue
            if self._confirm is not None:
                await self._confirm(key)
            await self._bump_epoch()
            return old, group, bytes(results[-1]).decode()
        raise rexc.WatchError("the document kept changing during delete; try again")
