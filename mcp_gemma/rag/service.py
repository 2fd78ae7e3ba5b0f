"""The knowledge base: ingest, search, list, get and delete documents (no MCP code here).

Redis holds documents and chunks; :class:`~mcp_gemma.rag.index.ChunkIndex` is this process's
in-memory index of them. Ingest is :mod:`mcp_gemma.rag.ingest`'s pipeline, search
:mod:`mcp_gemma.rag.search`'s; this service puts them together with the document reads and deletes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import redis.exceptions as rexc

from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.errors import InvalidInputError, McpGemmaError, NotFoundError
from mcp_gemma.fusion import Fusion
from mcp_gemma.health import ComponentStatus
from mcp_gemma.rag import snapshot
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import DocHead, DocStore
from mcp_gemma.rag.extract import ExtractedDoc, extract_data
from mcp_gemma.rag.index import ChunkIndex
from mcp_gemma.rag.ingest import IngestPipeline, Progress
from mcp_gemma.rag.models import (
    BatchIngestReport,
    ChunkRecord,
    DeleteReport,
    DocumentInput,
    DocumentList,
    DocumentRecord,
    DocumentSummary,
    IngestReport,
    SearchResult,
    SemanticSearchResult,
)
from mcp_gemma.rag.names import DEFAULT_COLLECTION
from mcp_gemma.rag.search import Searcher
from mcp_gemma.rag.sniff import unpack_bytes
from mcp_gemma.rag.validation import lookup_doc_ids, parse_filter, stored_metadata
from mcp_gemma.settings import Settings
from mcp_gemma.store.keys import Keys
from mcp_gemma.store.redis import RedisStore, redis_guard

logger = logging.getLogger(__name__)

MAX_LIST = 1_000


def collection_key_namespace(namespace: str, collection: str) -> str:
    """The Redis key namespace of ``collection`` in the server namespace ``namespace``: the namespace
    itself for ``default`` (what the knowledge base always used), else ``<namespace>#<collection>``
    (``#`` is in neither alphabet, so no two pairs share one)."""
    return namespace if collection == DEFAULT_COLLECTION else f"{namespace}#{collection}"


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

    def __init__(
        self,
        settings: Settings,
        store: RedisStore,
        embeddings: EmbeddingService,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self.settings: RagSettings = settings.rag
        self.store = store
        self.collection = collection
        """Which knowledge base of the server this is (:mod:`mcp_gemma.rag.collections`)."""
        self.allowed_roots: list[Path] = list(settings.allowed_roots)
        self.embeddings = embeddings
        namespace = collection_key_namespace(settings.namespace, collection)
        one_slot = collection != DEFAULT_COLLECTION and collection in self.settings.one_slot_collections
        keys = store.keys if namespace == store.keys.ns else Keys(namespace, one_slot=one_slot)
        self.docstore = DocStore(
            store.client,
            keys,
            self.settings.change_log_max,
            store.confirm_replicated,
            one_node=store.kind != "cluster" or keys.one_slot,
        )
        self.index = ChunkIndex(
            self.docstore,
            self.settings,
            embeddings.dim,
            lambda: store.generation,
            snapshot.path_for(settings.data_dir, namespace) if self.settings.snapshot else None,
        )
        self.pipeline = IngestPipeline(
            self.settings, self.allowed_roots, embeddings, self.docstore, self.index, store
        )
        self.searcher = Searcher(self.index, self.docstore, embeddings, self.settings, self.pipeline.settled)

    # ---- ingest ------------------------------------------------------------------------------

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
        return await self.pipeline.ingest(
            text, doc_id=doc_id, metadata=metadata, source=source, progress=progress
        )

    async def ingest_file(
        self,
        filename: str,
        data: bytes,
        *,
        doc_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest the bytes of one uploaded file (txt, md, html, pdf, json …, by its name's suffix);
        the id defaults to ``file:<name>`` and the metadata adds to what the file itself gives."""
        name = Path(filename.replace("\\", "/")).name
        if not name or name in (".", ".."):
            raise InvalidInputError(
                "the uploaded file has no name; send a file name with a suffix (.txt, .pdf …)"
            )
        limit = self.settings.max_file_bytes

        def extract() -> list[ExtractedDoc]:
            content, compression, inner = unpack_bytes(data, name, name, limit)
            return extract_data(content, name, name=inner, compression=compression)

        docs = await anyio.to_thread.run_sync(extract)
        if len(docs) != 1:
            raise InvalidInputError(
                f"{name} holds {len(docs)} documents; upload one document per file, or send them to "
                "batch ingest as inline documents"
            )
        doc = docs[0]
        return await self.ingest(
            doc.text,
            doc_id=doc_id or doc.id or f"file:{name}",
            metadata={**doc.metadata, **(metadata or {})},
            source=name,
            progress=progress,
        )

    async def ingest_documents(
        self, documents: Sequence[DocumentInput], progress: Progress | None = None
    ) -> BatchIngestReport:
        """Ingest many inline documents; a bad one is reported and skipped."""
        return await self.pipeline.ingest_documents(documents, progress)

    async def ingest_paths(
        self,
        paths: Sequence[str],
        *,
        pattern: str = "**/*",
        metadata: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> BatchIngestReport:
        """Ingest files and folders under the allowed roots; one bad file is reported and skipped."""
        return await self.pipeline.ingest_paths(paths, pattern=pattern, metadata=metadata, progress=progress)

    # ---- read and delete ---------------------------------------------------------------------

    @redis_guard
    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        min_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
        group_by_document: bool = False,
    ) -> SearchResult:
        """Vector search over chunks."""
        return await self.searcher.vector(
            query, limit=limit, min_score=min_score, filter=filter, group_by_document=group_by_document
        )

    @redis_guard
    async def hybrid_search(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        keyword_weight: float | None = None,
        fusion: Fusion | None = None,
        group_by_document: bool = False,
    ) -> SearchResult:
        """BM25 + vector search, fused (defaults: rag.fusion, rag.keyword_weight)."""
        return await self.searcher.hybrid(
            query,
            limit=limit,
            filter=filter,
            keyword_weight=keyword_weight,
            fusion=fusion,
            group_by_document=group_by_document,
        )

    @redis_guard
    async def semantic_search(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        diversity: float = 0.1,
        context_chunks: int = 1,
        min_score: float | None = None,
        group_by_document: bool = False,
    ) -> SemanticSearchResult:
        """MMR-diverse passages with neighbouring context."""
        return await self.searcher.semantic(
            query,
            limit=limit,
            filter=filter,
            diversity=diversity,
            context_chunks=context_chunks,
            min_score=min_score,
            group_by_document=group_by_document,
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
        await self.pipeline.settled()
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

    @redis_guard
    async def document_ids(self, prefix: str = "") -> list[str]:
        """Ids of the documents that start with ``prefix``, sorted (argument completion uses it)."""
        await self.pipeline.settled()
        await self.index.sync()
        return sorted(e.head.id for e in self.index.matching_docs([]) if e.head.id.startswith(prefix))

    async def _head(self, doc_id: str) -> tuple[str, DocHead]:
        for candidate in lookup_doc_ids(doc_id):
            head = await self.docstore.head(candidate)
            if head is not None:
                return candidate, head
        raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")

    @redis_guard
    async def get_document(
        self, doc_id: str, *, include_text: bool = True, include_chunks: bool = False
    ) -> DocumentRecord:
        """One document from Redis: metadata, text and (optionally) its chunks."""
        await self.pipeline.settled()
        doc_id, head = await self._head(doc_id)
        text = await self.docstore.text(doc_id) if include_text else None
        chunk_list = None
        if include_chunks:
            stored = await self.docstore.chunks(head.chunk_ids, None)
            chunk_list = [
                ChunkRecord(chunk_id=c.chunk_id, ordinal=c.ordinal, start=c.start, end=c.end, text=c.text)
                for c in stored
                if c is not None
            ]
        summary = _summary(head, stored_metadata(head.metadata_json, self.settings.max_metadata_depth))
        return DocumentRecord(**summary.model_dump(), text=text, chunk_list=chunk_list)

    @redis_guard
    async def document_text(self, doc_id: str) -> str:
        """The text of a document (the ``doc://{id}`` resource)."""
        await self.pipeline.settled()
        for candidate in lookup_doc_ids(doc_id):
            text = await self.docstore.text(candidate)
            if text is not None:
                return text
        raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")

    @redis_guard
    async def delete_document(self, doc_id: str) -> DeleteReport:
        """Remove a document, its chunks and its index entries (in every replica, through the stream)."""
        await self.pipeline.settled()
        async with self.index.lock:
            result = None
            for candidate in lookup_doc_ids(doc_id):
                result = await self.docstore.delete(candidate)
                if result is not None:
                    doc_id = candidate
                    break
            if result is None:
                raise NotFoundError(f"no document with id {doc_id!r}; call list_documents to see the ids")
            head, group, stream_id = result
            if self.index.ready:
                self.index.note_delete(group, stream_id)
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
            "build_chunks_read": idx.rebuild_read,
            "build_chunks_total": idx.rebuild_total,
            "built_from": idx.loaded_from,
        }
        behind = self.pipeline.behind
        if behind is not None:
            detail["write_behind_queued"] = len(behind)
            detail["write_behind_written"] = behind.written
            detail["write_behind_abandoned"] = behind.abandoned
            detail["write_behind_error"] = str(behind.error) if behind.error is not None else None
        name = "knowledge base" if self.collection == DEFAULT_COLLECTION else f"collection {self.collection}"
        return [ComponentStatus(name=name, kind="vector_index", loaded=idx.ready, detail=detail)]

    async def close(self) -> None:
        """Write the write-behind queue, stop an HNSW build in progress and save the index's snapshot
        (Redis is closed by the store)."""
        await self.pipeline.close()
        await anyio.to_thread.run_sync(self.index.ann.close)
        try:
            await self.index.save_snapshot()
        except (McpGemmaError, rexc.RedisError, OSError) as exc:
            logger.warning("index snapshot not saved: %s (the next start rebuilds from Redis)", exc)
