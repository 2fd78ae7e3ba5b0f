"""The knowledge base: ingest, search, list, get and delete documents (no MCP code here).

Redis holds documents and chunks; :class:`~mcp_gemma.rag.index.ChunkIndex` is this process's
in-memory index of them. Ingest validates, chunks (Rust), embeds in batches across documents,
then writes groups of documents in MULTI/EXEC transactions with their change-stream entries.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import numpy as np

from mcp_gemma.embeddings.service import AsyncProgress, EmbeddingService
from mcp_gemma.errors import InvalidInputError, McpGemmaError, NotFoundError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.rag import extract
from mcp_gemma.rag.chunking import split
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import DocHead, DocStore, PreparedDoc
from mcp_gemma.rag.index import ChunkIndex
from mcp_gemma.rag.models import (
    BatchIngestReport,
    ChunkRecord,
    DeleteReport,
    DocumentInput,
    DocumentList,
    DocumentRecord,
    DocumentSummary,
    IngestFailure,
    IngestReport,
    SearchResult,
    SemanticSearchResult,
)
from mcp_gemma.rag.search import Searcher
from mcp_gemma.rag.validation import check_doc_id, check_text, metadata_json, parse_filter
from mcp_gemma.settings import Settings
from mcp_gemma.store.redis import RedisStore, redis_guard

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], Awaitable[None]]
MAX_LIST = 1_000


@dataclass(slots=True)
class _Item:
    source: str
    text: str
    id: str | None
    metadata: Mapping[str, Any] | None


def text_hash(text: str) -> str:
    """SHA-256 of the UTF-8 text: the content hash that makes ingest idempotent."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _summary(head: DocHead, metadata: dict[str, Any]) -> DocumentSummary:
    return DocumentSummary(
        id=head.id,
        metadata=metadata,
        chunks=len(head.chunk_ids),
        characters=head.chars,
        content_hash=head.content_hash,
        created_at=head.created_at,
        updated_at=head.updated_at,
    )


class RagService:
    """Ingest and search documents kept in Redis, through an in-memory Rust index."""

    def __init__(self, settings: Settings, store: RedisStore, embeddings: EmbeddingService) -> None:
        self.settings: RagSettings = settings.rag
        self.allowed_roots: list[Path] = list(settings.allowed_roots)
        self.embeddings = embeddings
        self.docstore = DocStore(store.client, store.keys, self.settings.change_log_max)
        self.index = ChunkIndex(self.docstore, self.settings, embeddings.dim)
        self.searcher = Searcher(self.index, self.docstore, embeddings, self.settings)

    # ---- ingest ------------------------------------------------------------------------------

    def _prepare_item(self, item: _Item) -> tuple[str, str, str]:
        """Validate one document; returns (id, metadata JSON, content hash)."""
        check_text(item.text, self.settings.max_document_bytes)
        meta = metadata_json(item.metadata, self.settings.max_metadata_bytes)
        digest = text_hash(item.text)
        doc_id = check_doc_id(item.id) if item.id is not None else f"doc-{digest[:24]}"
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

        ``progress`` hears (chunks embedded, chunks) while a long document is embedded.
        """

        async def one() -> AsyncIterator[_Item | IngestFailure]:
            yield _Item(source or "text", text, doc_id, metadata)

        report = await self._run(one(), 1, None, raise_first=True, embed_progress=progress)
        return report.ingested[0]

    @redis_guard
    async def ingest_documents(
        self, documents: Sequence[DocumentInput], progress: Progress | None = None
    ) -> BatchIngestReport:
        """Ingest many inline documents; a bad one is reported and skipped."""
        self._check_batch(len(documents))

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
    ) -> BatchIngestReport:
        """Ingest files and folders under the allowed roots; one bad file is reported and skipped."""
        if not paths:
            raise InvalidInputError("give at least one path (a file or a folder under an allowed root)")
        if ".." in Path(pattern).parts or Path(pattern).is_absolute():
            raise InvalidInputError(f"glob {pattern!r} must be relative and must not contain '..'")
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
            early.extend(IngestFailure(source=s, error=e) for s, e in problems)
        if not files and not early:
            raise InvalidInputError(f"no supported files under {', '.join(paths)} match {pattern!r}")
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
                except McpGemmaError as exc:
                    yield IngestFailure(source=str(path), error=str(exc))
                    continue
                except OSError as exc:
                    yield IngestFailure(source=str(path), error=f"cannot read: {exc.strerror or exc}")
                    continue
                single = len(docs) == 1
                for doc in docs:
                    doc_id = doc.id or (f"file:{doc.source}" if single else None)
                    yield _Item(doc.source, doc.text, doc_id, {**doc.metadata, **(metadata or {})})

        return await self._run(items(), len(files) + len(early), progress, report_each=True)

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
                failed.append(IngestFailure(source=item.source, error=str(exc)))
                continue
            if doc_id in ids_in_group:
                await flush()
            group.append((item, doc_id, meta, digest))
            ids_in_group.add(doc_id)
            if len(group) >= self.settings.ingest_group_documents:
                await flush()
        await flush()
        if failed and not ingested:  # nothing went in: that is an error, not a report
            listed = "; ".join(f"{f.source}: {f.error}" for f in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise InvalidInputError(f"nothing was ingested: {listed}{more}")
        return BatchIngestReport(
            ingested=ingested,
            failed=failed,
            created=sum(r.status == "created" for r in ingested),
            replaced=sum(r.status == "replaced" for r in ingested),
            unchanged=sum(r.status == "unchanged" for r in ingested),
            chunks=sum(r.chunks for r in ingested if r.status != "unchanged"),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _write_group(
        self, group: Sequence[tuple[_Item, str, str, str]], embed_progress: Progress | None = None
    ) -> list[IngestReport]:
        heads = await self.docstore.heads([doc_id for _, doc_id, _, _ in group])
        reports: dict[int, IngestReport] = {}
        todo: list[tuple[int, _Item, str, str, str]] = []
        for i, ((item, doc_id, meta, digest), head) in enumerate(zip(group, heads, strict=True)):
            if head is not None and head.content_hash == digest and head.metadata_json == meta:
                reports[i] = IngestReport(
                    id=doc_id,
                    status="unchanged",
                    chunks=len(head.chunk_ids),
                    characters=head.chars,
                    content_hash=digest,
                    source=item.source,
                )
            else:
                todo.append((i, item, doc_id, meta, digest))
        if todo:
            settings = self.settings
            chunked = await anyio.to_thread.run_sync(
                lambda: [split(item.text, settings) for _, item, *_ in todo]
            )
            texts = [c.text for chunks in chunked for c in chunks]
            report: AsyncProgress | None = None
            if embed_progress is not None:
                reporter = embed_progress

                async def report(done: int, total: int) -> None:
                    await reporter(done, total, "embedding chunks")

            vectors = await self.embeddings.embed(texts, report)
            ids = await self.docstore.reserve_chunk_ids(len(texts))
            prepared: list[PreparedDoc] = []
            at = 0
            for (_, item, doc_id, meta, digest), chunks in zip(todo, chunked, strict=True):
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
                        ids[at : at + n],
                    )
                )
                at += n
            async with self.index.lock:
                outcomes = await self.docstore.write(prepared)
                if self.index.ready:
                    self.index.note_writes(outcomes)
                await self.index.sync_locked()
            for (i, *_), outcome in zip(todo, outcomes, strict=True):
                doc = outcome.doc
                reports[i] = IngestReport(
                    id=doc.id,
                    status=outcome.status,
                    chunks=len(doc.chunk_ids),
                    characters=len(doc.text),
                    content_hash=doc.content_hash,
                    source=doc.source,
                )
        return [reports[i] for i in range(len(group))]

    # ---- read and delete ---------------------------------------------------------------------

    @redis_guard
    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        min_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """Vector search over chunks."""
        return await self.searcher.vector(query, limit=limit, min_score=min_score, filter=filter)

    @redis_guard
    async def hybrid_search(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        keyword_weight: float | None = None,
        fusion: Literal["weighted", "rrf"] | None = None,
    ) -> SearchResult:
        """BM25 + vector search, fused (defaults: rag.fusion, rag.keyword_weight)."""
        return await self.searcher.hybrid(
            query, limit=limit, filter=filter, keyword_weight=keyword_weight, fusion=fusion
        )

    @redis_guard
    async def semantic_search(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        diversity: float = 0.3,
        context_chunks: int = 1,
        min_score: float | None = None,
    ) -> SemanticSearchResult:
        """MMR-diverse passages with neighbouring context."""
        return await self.searcher.semantic(
            query,
            limit=limit,
            filter=filter,
            diversity=diversity,
            context_chunks=context_chunks,
            min_score=min_score,
        )

    @redis_guard
    async def list_documents(
        self, *, offset: int = 0, limit: int = 20, filter: Mapping[str, Any] | None = None
    ) -> DocumentList:
        """One page of documents, newest first, optionally filtered by metadata."""
        if offset < 0:
            raise InvalidInputError(f"offset must be 0 or more, got {offset}")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIST}, got {limit}")
        conditions = parse_filter(filter)
        await self.index.sync()
        entries = sorted(self.index.matching_docs(conditions), key=lambda e: (-e.head.created_at, e.head.id))
        page = entries[offset : offset + limit]
        nxt = offset + limit if offset + limit < len(entries) else None
        return DocumentList(
            documents=[_summary(e.head, e.metadata) for e in page],
            total=len(entries),
            offset=offset,
            next_offset=nxt,
        )

    async def _head(self, doc_id: str) -> DocHead:
        check_doc_id(doc_id)
        head = await self.docstore.head(doc_id)
        if head is None:
            raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")
        return head

    @redis_guard
    async def get_document(
        self, doc_id: str, *, include_text: bool = True, include_chunks: bool = False
    ) -> DocumentRecord:
        """One document from Redis: metadata, text and (optionally) its chunks."""
        import json

        head = await self._head(doc_id)
        text = await self.docstore.text(doc_id) if include_text else None
        chunk_list = None
        if include_chunks:
            stored = await self.docstore.chunks(head.chunk_ids, None)
            chunk_list = [
                ChunkRecord(chunk_id=c.chunk_id, ordinal=c.ordinal, start=c.start, end=c.end, text=c.text)
                for c in stored
                if c is not None
            ]
        summary = _summary(head, json.loads(head.metadata_json))
        return DocumentRecord(**summary.model_dump(), text=text, chunk_list=chunk_list)

    @redis_guard
    async def document_text(self, doc_id: str) -> str:
        """The text of a document (the ``doc://{id}`` resource)."""
        check_doc_id(doc_id)
        text = await self.docstore.text(doc_id)
        if text is None:
            raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")
        return text

    @redis_guard
    async def delete_document(self, doc_id: str) -> DeleteReport:
        """Remove a document, its chunks and its index entries (in every replica, through the stream)."""
        check_doc_id(doc_id)
        async with self.index.lock:
            result = await self.docstore.delete(doc_id)
            if result is None:
                raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")
            head, stream_id = result
            if self.index.ready:
                self.index.note_delete(stream_id)
            await self.index.sync_locked()
        return DeleteReport(id=doc_id, deleted=True, chunks_removed=len(head.chunk_ids))

    # ---- lifecycle ---------------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        """What health_check reports about the knowledge base."""
        idx = self.index
        detail: dict[str, str | int | float | bool | None] = {
            "documents": len(idx.docs),
            "chunks": len(idx.chunks),
            "quantized": bool(idx.vectors.quantized),
            "ann": idx.ann.state,
            "ann_build_seconds": round(idx.ann.build_seconds, 3)
            if idx.ann.build_seconds is not None
            else None,
            "ann_error": idx.ann.last_error,
            "vector_bytes": int(idx.vectors.nbytes),
            "vocabulary": int(idx.keywords.vocab_size),
            "last_change": idx.last_id,
            "build_seconds": round(idx.rebuild_seconds, 3) if idx.rebuild_seconds is not None else None,
        }
        return [ComponentStatus(name="knowledge base", kind="vector_index", loaded=idx.ready, detail=detail)]

    async def close(self) -> None:
        """Stop an HNSW build in progress (Redis is closed by the store, the index is memory)."""
        await anyio.to_thread.run_sync(self.index.ann.close)
