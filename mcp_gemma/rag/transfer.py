"""Documents out of and into the knowledge base as plain records (``mcp-gemma export`` / ``import``).

A record holds everything a document is: id, text, metadata, content hash, creation and update
times, and its chunks' spans with their embeddings (float32, base64). Import checks each record (the
hash against the text, the spans against the text), keeps the exported chunking and times, reuses
the vectors when the caller says the embedding model is the same (else embeds the chunks again), and
writes through the same transaction and change stream as ingest, so every replica sees it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from mcp_gemma.errors import InvalidInputError, McpGemmaError
from mcp_gemma.rag.chunking import Chunk
from mcp_gemma.rag.docstore import PreparedDoc
from mcp_gemma.rag.ingest import text_hash
from mcp_gemma.rag.service import RagService
from mcp_gemma.rag.validation import check_text, metadata_json, new_doc_id
from mcp_gemma.store.redis import redis_guard

EXPORT_BATCH = 200


async def export_documents(rag: RagService) -> AsyncIterator[dict[str, Any]]:
    """Every document as a record, oldest first (read in batches, so memory stays bounded)."""
    store = rag.docstore
    dim = rag.embeddings.dim
    await rag.pipeline.settled()
    ids = await store.all_doc_ids()
    for start in range(0, len(ids), EXPORT_BATCH):
        part = ids[start : start + EXPORT_BATCH]
        heads = await store.heads(part)
        for doc_id, head in zip(part, heads, strict=True):
            if head is None:  # deleted since the listing
                continue
            text = await store.text(doc_id)
            chunks = await store.chunks(head.chunk_ids, dim)
            if text is None or any(c is None or c.vector is None for c in chunks):
                continue  # replaced meanwhile: its new version comes with a later listing
            present = [c for c in chunks if c is not None and c.vector is not None]
            vectors = np.stack([c.vector for c in present if c.vector is not None]).astype(np.float32)
            yield {
                "kind": "document",
                "id": doc_id,
                "text": text,
                "metadata": json.loads(head.metadata_json),
                "content_hash": head.content_hash,
                "created_at": head.created_at,
                "updated_at": head.updated_at,
                "chunks": [{"ordinal": c.ordinal, "start": c.start, "end": c.end} for c in present],
                "vectors": base64.b64encode(vectors.tobytes()).decode("ascii"),
            }


def _prepare(rag: RagService, record: Mapping[str, Any]) -> tuple[PreparedDoc, np.ndarray | None]:
    """A checked document from a record, and its exported vectors when they fit."""
    settings = rag.settings
    raw_id, text = record.get("id"), record.get("text")
    if not isinstance(raw_id, str) or not isinstance(text, str):
        raise InvalidInputError("a document record needs a string 'id' and 'text'")
    doc_id = new_doc_id(raw_id)
    check_text(text, settings.max_document_bytes)
    meta = metadata_json(record.get("metadata"), settings.max_metadata_bytes, settings.max_metadata_depth)
    digest = text_hash(text)
    if record.get("content_hash") != digest:
        raise InvalidInputError(f"document {doc_id!r}: content_hash does not match its text (altered?)")
    spans = record.get("chunks")
    if not isinstance(spans, list) or not spans:
        raise InvalidInputError(f"document {doc_id!r}: 'chunks' must be a non-empty list of spans")
    chunks: list[Chunk] = []
    for n, span in enumerate(spans):
        ok = isinstance(span, dict) and all(type(span.get(k)) is int for k in ("ordinal", "start", "end"))
        if not ok or span["ordinal"] != n or not 0 <= span["start"] < span["end"] <= len(text):
            raise InvalidInputError(f"document {doc_id!r}: chunk {n} is not a span of its text in order")
        chunks.append(Chunk(n, span["start"], span["end"], text[span["start"] : span["end"]]))
    times = [record.get("created_at"), record.get("updated_at")]
    if not all(isinstance(t, int | float) and t >= 0 for t in times):
        raise InvalidInputError(f"document {doc_id!r}: created_at and updated_at must be epoch seconds")
    vectors = None
    dim = rag.embeddings.dim
    try:
        raw = base64.b64decode(str(record.get("vectors", "")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == len(chunks) * dim * 4:
        vectors = np.frombuffer(raw, dtype=np.float32).reshape(len(chunks), dim).copy()
        if not np.isfinite(vectors).all():
            vectors = None
    doc = PreparedDoc(
        doc_id,
        text,
        meta,
        digest,
        chunks,
        np.zeros((0, dim), dtype=np.float32),
        None,
        created_at=float(times[0]),  # type: ignore[arg-type]
        updated_at=float(times[1]),  # type: ignore[arg-type]
    )
    return doc, vectors


@redis_guard
async def import_documents(
    rag: RagService, records: Sequence[Mapping[str, Any]], *, reuse_vectors: bool
) -> tuple[int, int, list[tuple[str, str]]]:
    """Write document records; returns ``(written, chunks, problems as (id, error))``.

    ``reuse_vectors``: the export came from the same embedding model, so its vectors are kept;
    otherwise every chunk is embedded again here.
    """
    await rag.pipeline.settled()  # queued one-document ingests go first, as they were acknowledged first
    problems: list[tuple[str, str]] = []
    prepared: list[PreparedDoc] = []
    seen: set[str] = set()
    for record in records:
        try:
            doc, vectors = _prepare(rag, record)
        except McpGemmaError as exc:
            problems.append((str(record.get("id", "?"))[:200], str(exc)))
            continue
        if doc.id in seen:
            problems.append((doc.id, "the same id twice in one import; the first was kept"))
            continue
        seen.add(doc.id)
        if reuse_vectors and vectors is not None:
            doc.vectors = vectors
        else:
            doc.vectors = await rag.embeddings.embed([c.text for c in doc.chunks])
        prepared.append(doc)
    if not prepared:
        return 0, 0, problems
    reserved = await rag.docstore.reserve_chunk_ids([(d.id, len(d.chunks)) for d in prepared])
    at = 0
    for doc, ids in zip(prepared, reserved, strict=True):
        doc.chunk_ids = ids
        at += len(ids)
    index = rag.index
    async with index.lock:
        outcomes = await rag.docstore.write(prepared)
        if index.ready:
            index.note_writes(outcomes)
        await index.sync_locked()
    return len(prepared), at, problems
