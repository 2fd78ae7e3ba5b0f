"""The in-memory search index of one process: a cache of Redis that follows the change stream.

It holds the Rust :class:`VectorIndex` and :class:`BM25Index` keyed by integer chunk ids, plus a
table of documents (head and parsed metadata) that filters and listings read. It is built from
Redis on first use (in a worker thread) and, before every read, catches up with the change streams
(one per slot group, see ``store/keys.py``) from the last entry it saw of each, so a change made by
any process over the same Redis is visible to the next query here. A process's own writes are
applied from memory, in stream order, without reading them back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from mcp_gemma import native
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag import snapshot
from mcp_gemma.rag.ann import AnnMirror
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import (
    Change,
    DocHead,
    DocStore,
    Positions,
    StoredChunk,
    WriteOutcome,
    stream_key,
)
from mcp_gemma.rag.validation import Condition, stored_metadata
from mcp_gemma.store.keys import LAYOUT_VERSION

logger = logging.getLogger(__name__)

Ids = npt.NDArray[np.uint64]
Vectors = npt.NDArray[np.float32]
CHANGE_BATCH = 1_000
GAP_CHECK_S = 10.0
THREAD_SCAN_ROWS = 20_000  # smaller scans take well under a millisecond: no thread hop
MISSING = object()
DOC_ID_FIELD = "doc_id"


@dataclass(slots=True)
class ChunkRef:
    """Where a chunk sits: its document, position and offsets."""

    doc_id: str
    ordinal: int
    start: int
    end: int


@dataclass(slots=True)
class DocEntry:
    """A document as the index knows it."""

    head: DocHead
    metadata: dict[str, Any]


@dataclass(slots=True)
class KeywordEvidence:
    """The keyword side of hybrid candidates (see :meth:`ChunkIndex.keyword_evidence`)."""

    scores: list[float]
    bound: float
    coverage: float
    terms: int
    chunk_coverage: list[float] | None = None


@dataclass(slots=True)
class _LocalChange:
    head: DocHead | None
    chunks: list[StoredChunk]


def lookup(metadata: dict[str, Any], field: str) -> Any:
    """``metadata[field]``, following dots into nested objects; :data:`MISSING` when absent."""
    if field in metadata:
        return metadata[field]
    node: Any = metadata
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


class ChunkIndex:
    """Vector + keyword index and document table of one process."""

    def __init__(
        self,
        store: DocStore,
        settings: RagSettings,
        dim: int,
        generation: Callable[[], int] = lambda: 0,
        snapshot_path: Path | None = None,
    ) -> None:
        self.store = store
        self.snapshot_path = snapshot_path  # where the index is saved on close and loaded from at start
        self._snapshot_covers: dict[int, str] | None = None  # positions of the snapshot on disk, if current
        self.loaded_from = "redis"
        self._generation = generation  # the store's restart count: a restarted server means a rebuild
        self._built_at = generation()
        self.settings = settings
        self.dim = dim
        self.vectors = native.VectorIndex(dim, "cosine", quantize=settings.quantize is True)
        self.keywords = native.BM25Index(settings.bm25_k1, settings.bm25_b, settings.bm25_analyzer)
        self.ann = AnnMirror(dim, settings)
        self.chunks: dict[int, ChunkRef] = {}
        self.docs: dict[str, DocEntry] = {}
        self.field_counts: Counter[str] = Counter()
        self.positions: Positions = {}
        self.ready = False
        self.rebuild_seconds: float | None = None
        self.rebuild_read = 0
        self.rebuild_total = 0
        self.lock = anyio.Lock()
        self._local: dict[tuple[int, str], _LocalChange] = {}
        self._last_gap_check = time.monotonic()
        self._epoch = -1
        self._own_epoch: int | None = None  # the change counter after this process's last noted write

    # ---- keeping up with Redis -------------------------------------------------------------

    async def sync(self) -> None:
        """Build the index on first use, then apply every change made since the last call."""
        async with self.lock:
            await self.sync_locked()

    async def sync_locked(self) -> None:
        """:meth:`sync` for a caller that holds :attr:`lock`.

        The change counter is read first (one GET); when it has not moved and this process has no
        write of its own pending, the streams are not read, except once every ``GAP_CHECK_S`` (a
        writer that died between its transaction and the counter bump is caught up then). Right
        after a write of its own whose bump moved the counter by one from what this index has seen,
        no other writer announced anything in between, so only the groups that write touched are
        read (instead of every group's stream on every ingest call)."""
        own, self._own_epoch = self._own_epoch, None
        groups: set[int] | None = None
        full = False
        if (
            own is not None
            and own == self._epoch + 1
            and self.ready
            and self._built_at == self._generation()
            and time.monotonic() - self._last_gap_check <= GAP_CHECK_S
        ):
            epoch, groups = own, {g for g, _ in self._local}
        else:
            epoch = await self.store.change_epoch()
            if not self.ready or self._built_at != self._generation():
                if self.ready:
                    logger.info("Redis was restarted; rebuilding the index from it")
                await self._rebuild()
            elif time.monotonic() - self._last_gap_check > GAP_CHECK_S:
                self._last_gap_check = time.monotonic()
                full = True
                firsts = await self.store.first_change_ids()
                for g, first in firsts.items():
                    seen = self.positions.get(g, "0-0")
                    if seen != "0-0" and (first is None or stream_key(first) > stream_key(seen)):
                        # entries after the last one seen may have been trimmed (or the stream was deleted)
                        logger.warning("fell behind change stream %d; rebuilding the index from Redis", g)
                        await self._rebuild()
                        break
        quiet = epoch == self._epoch and not full and not self._local
        while not quiet:
            changes = await self.store.changes_after(self.positions, CHANGE_BATCH, groups)
            if not changes:
                break
            await self._apply(changes)
            per_group = Counter(ch.group for ch in changes)
            for ch in changes:
                self.positions[ch.group] = ch.stream_id  # each group's entries come in stream order
            if max(per_group.values()) < CHANGE_BATCH:
                break
        self._epoch = epoch
        if self._local:  # written and already covered by a rebuild
            self._local = {
                (g, sid): v
                for (g, sid), v in self._local.items()
                if stream_key(sid) > stream_key(self.positions.get(g, "0-0"))
            }
        want = self.wants_int8(len(self.vectors), self.vectors.quantized)
        if want != self.vectors.quantized:
            logger.info(
                "vector index at %d chunks: int8 first pass %s", len(self.vectors), "on" if want else "off"
            )
            await anyio.to_thread.run_sync(self.vectors.set_quantized, want)
        await self.ann.maintain(self.vectors)

    def wants_int8(self, rows: int, now: bool) -> bool:
        """Whether the vector index should scan int8 codes first (``rag.quantize``)."""
        return native.auto_on(self.settings.quantize, rows, self.settings.quantize_min_chunks, now)

    def _read_progress(self, done: int) -> None:
        self.rebuild_read = done
        if done % 100_000 < 1_000 or done == self.rebuild_total:
            logger.info("rebuilding the search index: %d / %d chunks read", done, self.rebuild_total)

    def note_writes(self, outcomes: Sequence[WriteOutcome]) -> None:
        """Remember this process's own writes so :meth:`sync_locked` applies them without reading Redis."""
        for o in outcomes:
            doc = o.doc
            chunks = [
                StoredChunk(cid, doc.id, ch.ordinal, ch.start, ch.end, ch.text, vec)
                for cid, ch, vec in zip(doc.chunk_ids, doc.chunks, doc.vectors, strict=True)
            ]
            self._local[o.group, o.stream_id] = _LocalChange(o.head, chunks)
            self._own_epoch = o.epoch

    def note_delete(self, group: int, stream_id: str) -> None:
        """Remember this process's own delete."""
        self._local[group, stream_id] = _LocalChange(None, [])

    @property
    def last_id(self) -> str:
        """The newest change-stream entry this index covers, over every group (``0-0``: none)."""
        return max(self.positions.values(), key=stream_key, default="0-0")

    def _identity(self) -> dict[str, Any]:
        s = self.settings
        return {
            "layout": LAYOUT_VERSION,
            "namespace": self.store.keys.ns,
            "dim": self.dim,
            "bm25": [s.bm25_k1, s.bm25_b, s.bm25_analyzer],
        }

    async def save_snapshot(self) -> int | None:
        """Save the index with the stream positions it covers (see :mod:`.snapshot`); the bytes
        written, or ``None`` when there is nothing to save.

        The built structures are serialised in a worker thread while :attr:`lock` keeps changes out,
        then written to disk (another thread) with the lock released."""
        if self.snapshot_path is None or not self.ready:
            return None
        async with self.lock:
            if self._snapshot_covers == self.positions:
                return None  # the file on disk already holds this state (nothing changed since)
            path, identity = self.snapshot_path, self._identity()
            encoded = await anyio.to_thread.run_sync(self._encode_snapshot)
        size = await anyio.to_thread.run_sync(snapshot.write, path, identity, encoded)
        self._snapshot_covers = encoded.positions
        logger.info("index snapshot saved: %d chunks, %.1f MB, %s", encoded.chunks, size / 1e6, path)
        return size

    def _encode_snapshot(self) -> snapshot.Encoded:
        refs = self.chunks  # the same chunks as the vector and keyword indexes hold
        meta = snapshot.Meta(
            ids=np.fromiter(refs.keys(), dtype=np.uint64, count=len(refs)),
            doc_of=[r.doc_id for r in refs.values()],
            places=np.asarray([[r.ordinal, r.start, r.end] for r in refs.values()], dtype=np.int64).reshape(
                -1, 3
            ),
            heads=[e.head for e in self.docs.values()],
        )
        snap = snapshot.Snapshot(
            positions=dict(self.positions),
            meta=meta,
            vectors=self.vectors,
            keywords=self.keywords,
            ann=self.ann.graph,
        )
        return snapshot.encode(snap)

    async def _load_snapshot(self) -> bool:
        """Take the built structures from the snapshot when there is a usable one; ``False`` to
        build from Redis."""
        if self.snapshot_path is None:
            return False
        started = time.perf_counter()
        loaded = await snapshot.load(self.snapshot_path, self._identity(), self.dim, self._tables)
        if loaded is None:
            return False
        snap, (chunks, docs, counts) = loaded
        if not await self.store.streams_cover(snap.positions):
            logger.warning("index snapshot is older than the trimmed change streams; rebuilding from Redis")
            return False
        self.chunks, self.docs, self.field_counts = chunks, docs, counts
        self.vectors, self.keywords = snap.vectors, snap.keywords
        self.ann.restore(snap.ann)
        self.positions = dict(snap.positions)
        self._snapshot_covers = dict(snap.positions)
        self._epoch = -1  # replay what came after the snapshot
        self.ready = True
        self.loaded_from = "snapshot"
        self.rebuild_seconds = time.perf_counter() - started
        logger.info(
            "index loaded from its snapshot: %d documents, %d chunks in %.2f s (HNSW graph %s); "
            "replaying later changes",
            len(self.docs),
            len(self.chunks),
            self.rebuild_seconds,
            "restored" if self.ann.graph is not None else "not restored",
        )
        return True

    def _tables(self, meta: snapshot.Meta) -> tuple[dict[int, ChunkRef], dict[str, DocEntry], Counter[str]]:
        """The chunk and document tables of a snapshot's ``meta`` section (a worker thread's job)."""
        # columns, not rows: a million chunks in a fraction of the time a per-row unpacking takes
        ordinals, starts, ends = meta.places.T.tolist()
        chunks = dict(zip(meta.ids.tolist(), map(ChunkRef, meta.doc_of, ordinals, starts, ends), strict=True))
        docs: dict[str, DocEntry] = {}
        counts: Counter[str] = Counter()
        for head in meta.heads:
            docs[head.id] = entry = self._entry(head)
            counts.update(entry.metadata.keys())
        return chunks, docs, counts

    async def _rebuild(self) -> None:
        await self.store.check_slot_mode()
        if not self.ready and self._built_at == self._generation() and await self._load_snapshot():
            return
        self.loaded_from = "redis"
        started = time.perf_counter()
        self._built_at = self._generation()
        last = await self.store.last_change_ids()
        doc_ids = await self.store.all_doc_ids()
        heads = [h for h in await self.store.heads(doc_ids) if h is not None]
        chunk_ids = [c for h in heads for c in h.chunk_ids]
        logger.info(
            "rebuilding the search index: reading %d documents, %d chunks", len(heads), len(chunk_ids)
        )
        self.rebuild_total = len(chunk_ids)
        stored = [
            c
            for c in await self.store.chunks(chunk_ids, self.dim, progress=self._read_progress)
            if c is not None and c.vector is not None
        ]

        def build() -> tuple[Any, Any]:
            vectors = native.VectorIndex(self.dim, "cosine", quantize=self.wants_int8(len(stored), False))
            keywords = native.BM25Index(
                self.settings.bm25_k1, self.settings.bm25_b, self.settings.bm25_analyzer
            )
            if stored:
                ids = np.fromiter((c.chunk_id for c in stored), dtype=np.uint64, count=len(stored))
                vectors.add(ids, np.stack([c.vector for c in stored if c.vector is not None]))
                keywords.add_many(ids.tolist(), [c.text for c in stored])
            return vectors, keywords

        self.vectors, self.keywords = await anyio.to_thread.run_sync(build)
        self.ann.reset()  # a graph of the old index: sync_locked starts a fresh build when wanted
        self.chunks = {c.chunk_id: ChunkRef(c.doc_id, c.ordinal, c.start, c.end) for c in stored}
        self.docs = {}
        self.field_counts = Counter()
        for head in heads:
            self._set_doc(head.id, head)
        self.positions = last
        self.ready = True
        self.rebuild_seconds = time.perf_counter() - started
        logger.info(
            "search index built from Redis: %d documents, %d chunks in %.2f s",
            len(self.docs),
            len(self.chunks),
            self.rebuild_seconds,
        )

    async def _apply(self, changes: Sequence[Change]) -> None:
        removed: set[int] = set()
        added: dict[int, StoredChunk] = {}
        remote_adds: list[int] = []
        touched: dict[str, _LocalChange | None] = {}  # None: read the head from Redis
        for ch in changes:
            local = self._local.pop((ch.group, ch.stream_id), None)
            for cid in ch.removed:
                removed.add(cid)
                added.pop(cid, None)
            if local is not None:
                for sc in local.chunks:
                    added[sc.chunk_id] = sc
            else:
                remote_adds.extend(ch.added)
            touched[ch.doc_id] = local
        if remote_adds:
            for fetched in await self.store.chunks(remote_adds, self.dim):
                if fetched is not None and fetched.vector is not None and fetched.chunk_id not in removed:
                    added[fetched.chunk_id] = fetched
        remote_docs = [d for d, local in touched.items() if local is None]
        remote_heads = (
            dict(zip(remote_docs, await self.store.heads(remote_docs), strict=True)) if remote_docs else {}
        )

        gone = [c for c in removed if c in self.chunks]
        fresh = list(added.values())

        def mutate() -> None:
            if gone:
                gone_ids = np.asarray(gone, dtype=np.uint64)
                self.vectors.remove(gone_ids)
                self.ann.removed(gone_ids)
                for cid in gone:
                    self.keywords.remove(cid)
            if fresh:
                ids = np.fromiter((c.chunk_id for c in fresh), dtype=np.uint64, count=len(fresh))
                rows = np.stack([c.vector for c in fresh if c.vector is not None])
                self.vectors.add(ids, rows)
                self.ann.added(ids, rows)
                self.keywords.add_many(ids.tolist(), [c.text for c in fresh])

        if len(gone) + len(fresh) > 2_000:
            await anyio.to_thread.run_sync(mutate)
        else:
            mutate()
        for cid in gone:
            self.chunks.pop(cid, None)
        for c in fresh:
            self.chunks[c.chunk_id] = ChunkRef(c.doc_id, c.ordinal, c.start, c.end)
        for doc_id, local in touched.items():
            self._set_doc(doc_id, local.head if local is not None else remote_heads.get(doc_id))

    def _set_doc(self, doc_id: str, head: DocHead | None) -> None:
        old = self.docs.pop(doc_id, None)
        if old is not None:
            self.field_counts.subtract(old.metadata.keys())
        if head is None:
            return
        entry = self._entry(head)
        self.docs[doc_id] = entry
        self.field_counts.update(entry.metadata.keys())

    def _entry(self, head: DocHead) -> DocEntry:
        return DocEntry(head, stored_metadata(head.metadata_json, self.settings.max_metadata_depth))

    # ---- reading -----------------------------------------------------------------------------

    def check_fields(self, conditions: Sequence[Condition]) -> None:
        """Refuse a filter on a field no document has (a typo would otherwise match nothing, silently)."""
        for cond in conditions:
            root = cond.field.split(".", 1)[0]
            if cond.field == DOC_ID_FIELD or self.field_counts[cond.field] > 0 or self.field_counts[root] > 0:
                continue
            known = sorted(f for f, n in self.field_counts.items() if n > 0)
            raise InvalidInputError(
                f"no document has a metadata field {cond.field!r}; fields in use: "
                f"{', '.join(known[:50]) if known else 'none (no document has metadata)'}"
                f"{' …' if len(known) > 50 else ''}. Use doc_id to filter by document id."
            )

    def matching_docs(self, conditions: Sequence[Condition]) -> list[DocEntry]:
        """Documents whose metadata passes every condition."""
        if not conditions:
            return list(self.docs.values())
        self.check_fields(conditions)
        out = []
        for entry in self.docs.values():
            for cond in conditions:
                value = entry.head.id if cond.field == DOC_ID_FIELD else lookup(entry.metadata, cond.field)
                if value is MISSING or not cond.matches(value):
                    break
            else:
                out.append(entry)
        return out

    def allow_list(self, conditions: Sequence[Condition]) -> Ids | None:
        """Chunk ids of the documents that pass the filter; ``None`` = no filter (everything)."""
        if not conditions:
            return None
        ids = [
            cid
            for entry in self.matching_docs(conditions)
            for cid in entry.head.chunk_ids
            if cid in self.chunks
        ]
        return np.asarray(ids, dtype=np.uint64)

    async def vector_search(self, query: Vectors, k: int, allow: Ids | None) -> list[tuple[int, float]]:
        """Top ``k`` chunks by cosine similarity: from the HNSW graph when one serves and nothing is
        filtered (a fraction of a millisecond, so inline), else an exact scan (big ones in a thread)."""
        if allow is not None and len(allow) == 0:
            return []
        if allow is None and (hits := self.ann.search(query, k, self.vectors)) is not None:
            return [(int(i), float(s)) for i, s in zip(*hits, strict=True)]

        def scan() -> tuple[Ids, Vectors]:
            return self.vectors.search(query, k, allow)

        rows = len(self.vectors) if allow is None else len(allow)
        ids, scores = await anyio.to_thread.run_sync(scan) if rows > THREAD_SCAN_ROWS else scan()
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    async def keyword_search(self, query: str, k: int, allow: Ids | None) -> list[tuple[int, float]]:
        """Top ``k`` chunks by BM25."""
        if allow is not None and len(allow) == 0:
            return []

        def scan() -> tuple[Ids, Vectors]:
            return self.keywords.search(query, k, allow)

        rows = len(self.keywords) if allow is None else len(allow)
        ids, scores = await anyio.to_thread.run_sync(scan) if rows > THREAD_SCAN_ROWS else scan()
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    def keyword_evidence(
        self, query: str, ids: Sequence[int], best: int | None, *, chunk_coverage: bool = False
    ) -> KeywordEvidence:
        """What hybrid fusion needs of the keyword side for candidates ``ids``: their BM25 scores, the
        query's score bound, how much of the query the best keyword hit ``best`` covers, and the
        query's number of distinct terms; with ``chunk_coverage`` also each candidate's own coverage
        (``fusion="coverage"``; ``best`` must then be one of ``ids``)."""
        keys = np.asarray(ids, dtype=np.uint64)
        scores = self.keywords.scores(query, keys)
        bound = self.keywords.max_score(query)
        terms = len(set(native.tokenize(query, self.settings.bm25_analyzer)))
        if chunk_coverage:
            covers = [float(c) for c in self.keywords.coverage_many(query, keys)]
            coverage = covers[list(ids).index(best)] if best is not None else 0.0
            return KeywordEvidence([float(s) for s in scores], float(bound), coverage, terms, covers)
        coverage = self.keywords.coverage(query, best) if best is not None else 0.0
        return KeywordEvidence([float(s) for s in scores], float(bound), float(coverage), terms)

    def cosines(self, query: Vectors, ids: Sequence[int]) -> list[float]:
        """Cosine similarity of ``query`` with each chunk of ``ids`` (0.0 for one that is gone)."""
        out = []
        for cid in ids:
            vec = self.vectors.get(cid)
            out.append(0.0 if vec is None else float(np.dot(vec, query)))
        return out

    def vector_of(self, chunk_id: int) -> Vectors | None:
        """The stored (unit) vector of a chunk."""
        return self.vectors.get(chunk_id)
