"""The ingest pipeline of the knowledge base: validate, chunk (Rust), embed in batches across
documents, then write groups of documents in MULTI/EXEC transactions with their change-stream
entries, and bring this process's index up to date.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from mcp_gemma.embeddings.service import AsyncProgress, EmbeddingService
from mcp_gemma.errors import InvalidInputError, McpGemmaError, QuotaExceededError
from mcp_gemma.rag import extract
from mcp_gemma.rag.behind import Queued, Record, WriteBehind
from mcp_gemma.rag.chunking import Chunk, split
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import DocHead, DocStore, PreparedDoc
from mcp_gemma.rag.index import ChunkIndex
from mcp_gemma.rag.models import (
    BatchIngestReport,
    DocumentInput,
    IngestFailure,
    IngestReport,
)
from mcp_gemma.rag.sniff import FileSkipped
from mcp_gemma.rag.validation import check_text, metadata_json, new_doc_id
from mcp_gemma.rag.walk import compile_glob
from mcp_gemma.store.redis import RedisStore, current_call, redis_guard

logger = logging.getLogger(__name__)
MAX_ATTEMPTED = 10_000
SPLIT_INLINE_CHARS = 4_096  # texts this short are chunked on the event loop: ~0.1 ms a KB, under a thread hop
# one-document ingests up to this long take the write-behind queue (rag.write_behind_documents); a
# longer one fills batches of its own, so it is written before its call answers
WRITE_BEHIND_MAX_CHARS = 8_192
CLOSE_WRITE_S = 30.0  # a clean shutdown writes the queue for up to this long
OTHERS_POLL_S = 0.02  # a read polls another live process's queued documents this often
OTHERS_WAIT_S = 60.0  # and waits for them at most this long (its mark lasts ALIVE_MS unrefreshed)

Progress = Callable[[int, int, str], Awaitable[None]]


@dataclass(slots=True)
class _Item:
    source: str
    text: str
    id: str | None
    metadata: Mapping[str, Any] | None


def text_hash(text: str) -> str:
    """SHA-256 of the UTF-8 text: the content hash that makes ingest idempotent."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored_report(head: DocHead, status: str, source: str) -> IngestReport:
    """The report of an ingest that left the stored version ``head`` as it was."""
    return IngestReport(
        id=head.id,
        status=status,
        chunks=len(head.chunk_ids),
        characters=head.chars,
        content_hash=head.content_hash,
        source=source,
    )


class IngestPipeline:
    """Add documents (inline text, many documents, or files under the allowed roots)."""

    def __init__(
        self,
        settings: RagSettings,
        allowed_roots: Sequence[Path],
        embeddings: EmbeddingService,
        docstore: DocStore,
        index: ChunkIndex,
        store: RedisStore | None = None,
    ) -> None:
        self.store = store  # what redis_guard reads to ride out a cluster failover
        # writes of calls in progress, by (call, doc id, content hash, metadata): a call re-run after a
        # failover finds its own earlier write applied and reports what that write did, not "unchanged"
        self._attempted: OrderedDict[tuple[int, str, str, str], tuple[str, int]] = OrderedDict()
        self.settings = settings
        self.allowed_roots: list[Path] = list(allowed_roots)
        self.embeddings = embeddings
        self.docstore = docstore
        self.index = index
        self.behind = (
            WriteBehind(
                settings.write_behind_documents,
                self._write_queued,
                docstore.queue_put,
                docstore.queue_alive,
                docstore.queue_drop,
            )
            if settings.write_behind_documents
            else None
        )
        self._recovered = False

    def _earlier_status(self, doc_id: str, digest: str, meta: str) -> str:
        """ "unchanged", or what an earlier run of this call did when that run wrote this very
        document before it failed (a duplicate in the same run is unchanged)."""
        call, attempt = current_call()
        earlier = self._attempted.get((call, doc_id, digest, meta)) if call else None
        return earlier[0] if earlier is not None and earlier[1] < attempt else "unchanged"

    def _prepare_item(self, item: _Item) -> tuple[str, str, str]:
        """Validate one document; returns (id, metadata JSON, content hash)."""
        check_text(item.text, self.settings.max_document_bytes)
        meta = metadata_json(
            item.metadata, self.settings.max_metadata_bytes, self.settings.max_metadata_depth
        )
        digest = text_hash(item.text)
        doc_id = new_doc_id(item.id) if item.id is not None else f"doc-{digest[:24]}"
        return doc_id, meta, digest

    @redis_guard
    async def ingest(
        self,
        text: str,
        *,
        doc_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add or replace one document; unchanged content (and metadata) costs nothing.

        ``progress`` hears (chunks embedded, chunks) while a long document is embedded. A short
        document takes the write-behind queue (:mod:`mcp_gemma.rag.behind`).
        """
        item = _Item(source or "text", text, doc_id, metadata)
        if self.behind is not None and len(text) <= WRITE_BEHIND_MAX_CHARS:
            return await self._ingest_behind(self.behind, item)
        await self.settled()

        async def one() -> AsyncIterator[_Item | IngestFailure]:
            yield item

        report = await self._run(one(), 1, None, raise_first=True, embed_progress=progress)
        return report.ingested[0]

    async def _ingest_behind(self, behind: WriteBehind, item: _Item) -> IngestReport:
        """Validate, decide the status, chunk, record and queue one document; the writer embeds and
        writes it with the documents queued around it."""
        await self._recover()
        doc_id, meta, digest = self._prepare_item(item)
        # what the write would refuse is refused before the answer: another slot mode, no model
        await self.docstore.check_slot_mode()
        await self.embeddings.get()
        queued = behind.pending(doc_id)
        if queued is not None:
            if queued.rec.digest == digest and queued.rec.meta == meta:
                return IngestReport(
                    id=doc_id,
                    status="unchanged",
                    chunks=len(queued.chunks),
                    characters=len(queued.rec.text),
                    content_hash=digest,
                    source=item.source,
                )
            status = "replaced"
            created = queued.created and behind.waiting(doc_id)  # it takes that version's place
        else:
            head, stored = await self.docstore.head_and_count(doc_id)
            if head is not None and head.content_hash == digest and head.metadata_json == meta:
                return _stored_report(head, "unchanged", item.source)
            created = head is None
            status = "created" if created else "replaced"
            await self._check_quota(int(created), stored)
        chunks = await self._split(item.text)
        metadata = dict(item.metadata) if item.metadata is not None else None
        rec = Record(item.text, metadata, item.source, meta, digest, time.time(), behind.owner)
        await behind.put(Queued(doc_id, rec, rec.encode(), chunks, created))
        return IngestReport(
            id=doc_id,
            status=status,
            chunks=len(chunks),
            characters=len(item.text),
            content_hash=digest,
            source=item.source,
        )

    async def _split(self, text: str) -> list[Chunk]:
        if len(text) <= SPLIT_INLINE_CHARS:
            return split(text, self.settings)  # microseconds: a thread hop would cost more
        return await anyio.to_thread.run_sync(split, text, self.settings)

    @redis_guard
    async def _write_queued(self, group: Sequence[Queued]) -> None:
        """The write-behind writer's step: embed and write ``group`` as one batch."""
        items = [
            (_Item(q.rec.source, q.rec.text, q.doc_id, q.rec.metadata), q.doc_id, q.rec.meta, q.rec.digest)
            for q in group
        ]
        await self._write_group(
            items, chunked=[q.chunks for q in group], acked=[q.rec.at for q in group], check_quota=False
        )

    async def settled(self) -> None:
        """Wait until every document acknowledged before this call is written, by this process or
        by another one over the same Redis (a dead one's are written here): reads and the other
        writes call this first. Costs one HLEN when nothing waits."""
        behind = self.behind
        if behind is None:
            return
        await self._recover()
        await behind.settled()
        if not await self.docstore.queue_size():
            return
        theirs = {d: v for d, v in (await self._read_queue()).items() if v[1].owner != behind.owner}
        deadline = time.monotonic() + OTHERS_WAIT_S
        while theirs:
            if await self._adopt_orphans(theirs):
                await behind.settled()
            if not theirs:
                break
            if time.monotonic() > deadline:
                logger.warning(
                    "write-behind: %d documents another server acknowledged are still not written "
                    "after %.0f s; reading without them",
                    len(theirs),
                    OTHERS_WAIT_S,
                )
                break
            await anyio.sleep(OTHERS_POLL_S)
            now = await self.docstore.queue_entries(list(theirs))
            theirs = {d: v for d, v in theirs.items() if now.get(d) == v[0]}

    async def _read_queue(self) -> dict[str, tuple[bytes, Record]]:
        """Every recorded ingest (raw and decoded); one that cannot be read is dropped (and logged)."""
        out: dict[str, tuple[bytes, Record]] = {}
        bad: list[tuple[str, bytes]] = []
        for doc_id, raw in (await self.docstore.queue_entries()).items():
            try:
                out[doc_id] = (raw, Record.decode(raw))
            except ValueError as exc:
                logger.warning("write-behind: dropping an unreadable queued entry for %r: %s", doc_id, exc)
                bad.append((doc_id, raw))
        await self.docstore.queue_drop(bad)
        return out

    async def _recover(self) -> None:
        """Once per process: write the acknowledged documents a process that stopped left unwritten
        (unless the document changed since); a live process's are left to it."""
        if self._recovered or self.behind is None:
            return
        self._recovered = True
        try:
            await self._adopt_orphans(await self._read_queue())
        except BaseException:
            self._recovered = False
            raise

    async def _adopt_orphans(self, entries: dict[str, tuple[bytes, Record]]) -> bool:
        """Queue here the ``entries`` whose process is no longer alive (removing them from
        ``entries``); drop those already written or overtaken by a newer version. True when any was
        queued."""
        assert self.behind is not None
        alive = await self.docstore.owners_alive(sorted({rec.owner for _, rec in entries.values()}))
        orphans = {k: v for k, v in entries.items() if v[1].owner not in alive}
        if not orphans:
            return False
        for doc_id in orphans:
            del entries[doc_id]
        heads = await self.docstore.heads(list(orphans))
        done: list[tuple[str, bytes]] = []
        revived: list[Queued] = []
        for (doc_id, (raw, rec)), head in zip(orphans.items(), heads, strict=True):
            same = head is not None and head.content_hash == rec.digest and head.metadata_json == rec.meta
            if head is not None and (head.updated_at >= rec.at or same):
                done.append((doc_id, raw))  # written, or changed since
                continue
            if self.behind.pending(doc_id) is not None:
                continue  # a newer version is queued here
            chunks = await self._split(rec.text)
            revived.append(Queued(doc_id, rec, raw, chunks, head is None))
        await self.docstore.queue_drop(done)
        if revived:
            logger.warning(
                "write-behind: writing %d acknowledged documents that a stopped process left unwritten",
                len(revived),
            )
            for entry in revived:
                await self.behind.put(entry, recorded=True)
        return bool(revived)

    async def close(self) -> None:
        """Write what the write-behind queue holds (the rest stays recorded for the next start)."""
        if self.behind is not None:
            await self.behind.close(CLOSE_WRITE_S)

    @redis_guard
    async def ingest_documents(
        self, documents: Sequence[DocumentInput], progress: Progress | None = None
    ) -> BatchIngestReport:
        """Ingest many inline documents; a bad one is reported and skipped."""
        self._check_batch(len(documents))
        await self.settled()

        async def items() -> AsyncIterator[_Item | IngestFailure]:
            for i, doc in enumerate(documents):
                yield _Item(f"documents[{i}]", doc.text, doc.id, doc.metadata)

        return await self._run(items(), len(documents), progress)

    @redis_guard
    async def ingest_paths(
        self,
        paths: Sequence[str],
        *,
        pattern: str = "**/*",
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        strict: bool = True,
    ) -> BatchIngestReport:
        """Ingest files and folders under the allowed roots; one bad file is reported and skipped.

        ``strict=False`` (folder sync) returns a report where nothing was found or went in, instead
        of raising."""
        if not paths:
            raise InvalidInputError("give at least one path (a file or a folder under an allowed root)")
        if ".." in Path(pattern).parts or Path(pattern).is_absolute():
            raise InvalidInputError(f"glob {pattern!r} must be relative and must not contain '..'")
        compile_glob(pattern)  # a bad glob is one clear error, not one per path
        await self.settled()
        files: list[tuple[Path, Path]] = []
        early: list[IngestFailure] = []
        for raw in paths:
            try:
                found, problems = await anyio.to_thread.run_sync(
                    functools.partial(extract.expand, raw, self.allowed_roots, pattern)
                )
            except McpGemmaError as exc:
                if len(paths) == 1:
                    raise
                early.append(IngestFailure(source=raw, error=str(exc)))
                continue
            files.extend(found)
            early.extend(IngestFailure(source=s, error=e, reason=r) for s, r, e in problems)
        if not files and not early and strict:
            raise InvalidInputError(f"no files under {', '.join(paths)} match {pattern!r}")
        self._check_batch(len(files))
        limit = self.settings.max_file_bytes

        async def items() -> AsyncIterator[_Item | IngestFailure]:
            for failure in early:
                yield failure
            for path, root in files:
                try:
                    docs = await anyio.to_thread.run_sync(
                        functools.partial(extract.extract_file, path, root, limit)
                    )
                except FileSkipped as exc:
                    yield IngestFailure(source=str(path), error=str(exc), reason=exc.reason)
                    continue
                except McpGemmaError as exc:
                    yield IngestFailure(source=str(path), error=str(exc))
                    continue
                except OSError as exc:
                    yield IngestFailure(
                        source=str(path), error=f"cannot read: {exc.strerror or exc}", reason="unreadable"
                    )
                    continue
                except Exception as exc:  # a parser's own failure: one bad file must not stop the batch
                    logger.exception("extracting %s failed", path)
                    yield IngestFailure(
                        source=str(path),
                        error=f"cannot be read ({type(exc).__name__}); the server log has details",
                        reason="unreadable",
                    )
                    continue
                single = len(docs) == 1
                for doc in docs:
                    doc_id = doc.id or (f"file:{doc.source}" if single else None)
                    yield _Item(doc.source, doc.text, doc_id, {**doc.metadata, **(metadata or {})})

        return await self._run(items(), len(files) + len(early), progress, report_each=True, strict=strict)

    def _check_batch(self, n: int) -> None:
        if n > self.settings.max_batch_documents:
            raise InvalidInputError(
                f"{n} documents in one batch; the limit is {self.settings.max_batch_documents} "
                "(rag.max_batch_documents): split the batch"
            )

    async def _run(
        self,
        items: AsyncIterator[_Item | IngestFailure],
        total: int,
        progress: Progress | None,
        *,
        raise_first: bool = False,
        report_each: bool = False,
        embed_progress: Progress | None = None,
        strict: bool = True,
    ) -> BatchIngestReport:
        started = time.perf_counter()
        ingested: list[IngestReport] = []
        failed: list[IngestFailure] = []
        group: list[tuple[_Item, str, str, str]] = []
        ids_in_group: set[str] = set()
        seen = 0

        async def flush() -> None:
            if group:
                ingested.extend(await self._write_group(group, embed_progress))
                group.clear()
                ids_in_group.clear()
            if progress is not None and not report_each:
                await progress(seen, total, f"{len(ingested)} documents stored")

        async for item in items:
            seen += 1
            if report_each and progress is not None:
                await progress(min(seen, total), total, item.source)
            if isinstance(item, IngestFailure):
                failed.append(item)
                continue
            try:
                doc_id, meta, digest = self._prepare_item(item)
            except McpGemmaError as exc:
                if raise_first:
                    raise
                reason = "empty" if not item.text.strip() else "invalid"
                failed.append(IngestFailure(source=item.source, error=str(exc), reason=reason))
                continue
            if doc_id in ids_in_group:
                await flush()
            group.append((item, doc_id, meta, digest))
            ids_in_group.add(doc_id)
            if len(group) >= self.settings.ingest_group_documents:
                await flush()
        await flush()
        if failed and not ingested and strict:  # nothing went in: that is an error, not a report
            listed = "; ".join(f"{f.source}: {f.error}" for f in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise InvalidInputError(f"nothing was ingested: {listed}{more}")
        return BatchIngestReport(
            ingested=ingested,
            failed=failed,
            skipped=dict(sorted(Counter(f.reason for f in failed).items())),
            created=sum(r.status == "created" for r in ingested),
            replaced=sum(r.status == "replaced" for r in ingested),
            unchanged=sum(r.status == "unchanged" for r in ingested),
            chunks=sum(r.chunks for r in ingested if r.status != "unchanged"),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _check_quota(self, new: int, stored: int | None = None) -> None:
        """Refuse documents past ``rag.max_documents`` (a soft limit: concurrent ingests may pass it
        by what they add at once); ``stored`` is the documents stored, when just read."""
        if not new:
            return
        if stored is None:
            stored = await self.docstore.count()
        held = stored + (self.behind.pending_created() if self.behind else 0)
        most = self.settings.max_documents
        if held + new > most:
            raise QuotaExceededError(
                f"the knowledge base holds {held} documents and this ingest would add {new}, past "
                f"rag.max_documents={most}; delete documents or raise rag.max_documents"
            )

    async def _write_group(
        self,
        group: Sequence[tuple[_Item, str, str, str]],
        embed_progress: Progress | None = None,
        *,
        chunked: list[list[Chunk]] | None = None,
        acked: list[float] | None = None,
        check_quota: bool = True,
    ) -> list[IngestReport]:
        """Embed and write ``group`` (chunked already when ``chunked`` is given: the write-behind
        queue's documents, whose quota was checked when they were acknowledged).

        ``acked``: when each was acknowledged (the write-behind queue's). That is its ``updated_at``,
        and it is written only over an older version: a write of the same document acknowledged
        later (by another replica meanwhile) is not overwritten by this earlier one."""
        heads = await self.docstore.heads([doc_id for _, doc_id, _, _ in group])
        reports: dict[int, IngestReport] = {}
        todo: list[tuple[int, _Item, str, str, str]] = []
        for i, ((item, doc_id, meta, digest), head) in enumerate(zip(group, heads, strict=True)):
            if head is not None and head.content_hash == digest and head.metadata_json == meta:
                reports[i] = _stored_report(head, self._earlier_status(doc_id, digest, meta), item.source)
            else:
                todo.append((i, item, doc_id, meta, digest))
        if check_quota:
            await self._check_quota(sum(head is None for head in heads))
        if todo:
            settings = self.settings

            def chunk_all() -> list[list[Chunk]]:
                return [split(item.text, settings) for _, item, *_ in todo]

            if chunked is not None:
                chunked = [chunked[i] for i, *_ in todo]
            elif sum(len(item.text) for _, item, *_ in todo) <= SPLIT_INLINE_CHARS:
                chunked = chunk_all()  # microseconds: a thread hop would cost more than the work
            else:
                chunked = await anyio.to_thread.run_sync(chunk_all)
            texts = [c.text for chunks in chunked for c in chunks]
            report: AsyncProgress | None = None
            if embed_progress is not None:
                reporter = embed_progress

                async def report(done: int, total: int) -> None:
                    await reporter(done, total, "embedding chunks")

            vectors = await self.embeddings.embed(texts, report)
            ids = await self.docstore.reserve_chunk_ids(
                [(doc_id, len(chunks)) for (_, _, doc_id, _, _), chunks in zip(todo, chunked, strict=True)]
            )
            prepared: list[PreparedDoc] = []
            at = 0
            for (i, item, doc_id, meta, digest), chunks, chunk_ids in zip(todo, chunked, ids, strict=True):
                n = len(chunks)
                prepared.append(
                    PreparedDoc(
                        doc_id,
                        item.text,
                        meta,
                        digest,
                        chunks,
                        np.ascontiguousarray(vectors[at : at + n]),
                        item.source,
                        chunk_ids,
                        updated_at=acked[i] if acked is not None else None,
                        only_over_older=acked is not None,
                    )
                )
                at += n
            call, attempt = current_call()
            if call:
                for i, _, doc_id, meta, digest in todo:
                    status = "replaced" if heads[i] else "created"
                    self._attempted[call, doc_id, digest, meta] = (status, attempt)
                while len(self._attempted) > MAX_ATTEMPTED:
                    self._attempted.popitem(last=False)
            async with self.index.lock:
                outcomes = await self.docstore.write(prepared)
                if self.index.ready:
                    self.index.note_writes([o for o in outcomes if o.status != "overtaken"])
                await self.index.sync_locked()
            for (i, item, *_), outcome in zip(todo, outcomes, strict=True):
                doc = outcome.doc
                if outcome.status == "overtaken":  # a later write stands: this one changed nothing
                    logger.info("write-behind: %r was changed after this version was acknowledged", doc.id)
                    reports[i] = _stored_report(outcome.head, "unchanged", item.source)
                    continue
                reports[i] = IngestReport(
                    id=doc.id,
                    status=outcome.status,
                    chunks=len(doc.chunk_ids),
                    characters=len(doc.text),
                    content_hash=doc.content_hash,
                    source=doc.source,
                )
        return [reports[i] for i in range(len(group))]
