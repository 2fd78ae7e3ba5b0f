"""What the knowledge base returns: pydantic records that become the tools' structured output."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IngestStatus = Literal["created", "replaced", "unchanged"]
SearchMode = Literal["vector", "hybrid", "keyword"]


class DocumentInput(BaseModel):
    """One document to ingest: its text, an optional id and optional metadata (nothing else: a
    misspelt ``metdata`` is refused, not dropped)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The document's text (UTF-8).")
    id: str | None = Field(None, description="Document id; default: derived from the content hash.")
    metadata: dict[str, Any] | None = Field(None, description="JSON metadata used by filters (no NaN / inf).")


class IngestReport(BaseModel):
    """The outcome of ingesting one document."""

    id: str = Field(description="Document id (use it with get_document, delete_document, doc://{id}).")
    status: IngestStatus = Field(description="created, replaced (same id, new content) or unchanged.")
    chunks: int = Field(description="Chunks the document was split into.")
    characters: int = Field(description="Length of the text in characters.")
    content_hash: str = Field(description="SHA-256 of the text.")
    source: str | None = Field(None, description="File the document came from, when ingested from a path.")


class IngestFailure(BaseModel):
    """A document or file that was not ingested, and why."""

    source: str = Field(description="The path, or 'documents[i]' for an inline document.")
    error: str = Field(description="What went wrong and what to do about it.")
    reason: str = Field(
        "invalid",
        description="Why, in one word: binary, empty, too_large, encoding, corrupt, invalid, unreadable, "
        "outside_roots, hidden or limit.",
    )


class BatchIngestReport(BaseModel):
    """The outcome of a batch: what went in and what was skipped."""

    ingested: list[IngestReport] = Field(description="Documents stored (created, replaced or unchanged).")
    failed: list[IngestFailure] = Field(description="Documents or files reported and skipped.")
    skipped: dict[str, int] = Field(
        default_factory=dict, description="How many documents or files were skipped, by reason."
    )
    created: int
    replaced: int
    unchanged: int
    chunks: int = Field(description="Chunks written in total.")
    seconds: float = Field(description="Wall-clock time of the batch.")


class ChunkSpan(BaseModel):
    """Where a chunk sits in its document."""

    chunk_id: int
    ordinal: int
    start: int
    end: int


class SearchHit(BaseModel):
    """One matching chunk, with what is needed to cite it."""

    chunk_id: int = Field(description="Integer id of the chunk (cite it as [chunk:ID]).")
    doc_id: str = Field(description="The document the chunk belongs to.")
    ordinal: int = Field(description="Position of the chunk in its document (0-based).")
    score: float = Field(
        description="Cosine similarity (vector) or fused score (hybrid: (1 - w) * cosine + w * BM25 / "
        "the query's BM25 bound, or the RRF sum)."
    )
    text: str
    start: int = Field(description="Offset of the chunk's first character in the document text.")
    end: int = Field(description="Offset just past the chunk's last character.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="The document's metadata.")
    vector_score: float | None = Field(None, description="Cosine similarity.")
    keyword_score: float | None = Field(None, description="BM25 score (absent when no query term matches).")
    document_matches: int | None = Field(
        None, description="With group_by_document: how many of the document's chunks were candidates."
    )
    neighbours: list[ChunkSpan] | None = Field(
        None, description="With group_by_document: the chunks just before and after this one."
    )


class SearchResult(BaseModel):
    """Chunks ranked by relevance to a query."""

    query: str
    mode: SearchMode
    hits: list[SearchHit]
    searched_chunks: int = Field(description="Chunks the filter allowed (all chunks without a filter).")
    took_ms: float
    fusion: str | None = Field(
        None, description="Hybrid only: the fusion used (adaptive, coverage, weighted, rrf)."
    )
    keyword_weight: float | None = Field(
        None, description="Hybrid only: the BM25 share used (adaptive, coverage: chosen for this query)."
    )


class Passage(BaseModel):
    """An LLM-ready passage: a matching chunk with its neighbours stitched in."""

    doc_id: str
    chunk_id: int = Field(description="The chunk that matched.")
    chunk_ids: list[int] = Field(description="Chunks stitched into this passage, in document order.")
    score: float = Field(
        description="Relevance of the matching chunk: the hybrid fused score (rag.semantic_candidates = "
        '"hybrid", the default) or its cosine similarity ("vector").'
    )
    text: str = Field(description="The passage: matching chunk plus neighbouring context.")
    start: int = Field(description="Offset of the passage in the document text.")
    end: int
    match_start: int = Field(description="Offset of the matching chunk in the document text.")
    match_end: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class SemanticSearchResult(BaseModel):
    """Diverse passages (MMR) with context, ready to put in a prompt."""

    query: str
    passages: list[Passage]
    searched_chunks: int
    took_ms: float


class ChunkRecord(BaseModel):
    """One stored chunk of a document."""

    chunk_id: int
    ordinal: int
    start: int
    end: int
    text: str


class DocumentSummary(BaseModel):
    """A document as listed: id, metadata and size."""

    id: str
    metadata: dict[str, Any]
    chunks: int
    characters: int
    content_hash: str
    created_at: float = Field(description="Unix time of the first ingest.")
    updated_at: float = Field(description="Unix time of the latest change.")


class DocumentRecord(DocumentSummary):
    """One document with its text and, optionally, its chunks."""

    text: str | None = Field(None, description="The full text (omitted when include_text is false).")
    chunk_list: list[ChunkRecord] | None = Field(None, description="The chunks, when include_chunks is true.")


class DocumentList(BaseModel):
    """One page of documents, newest first."""

    documents: list[DocumentSummary]
    total: int = Field(description="Documents matching the filter.")
    offset: int
    next_offset: int | None = Field(description="Pass as offset for the next page; null on the last page.")


class DeleteReport(BaseModel):
    """What a delete removed."""

    id: str
    deleted: bool
    chunks_removed: int


class Evidence(BaseModel):
    """One piece of evidence behind a research answer."""

    kind: Literal["document", "memory", "url"]
    ref: str = Field(description="chunk:ID, memory:ID or the URL; the answer cites these.")
    text: str
    score: float
    source: str = Field(description="Document id, memory tier or URL.")
    start: int | None = None
    end: int | None = None


class ResearchReport(BaseModel):
    """Ranked evidence for a question and, when a model is available, a short cited answer."""

    query: str
    answer: str | None = Field(
        description="The model's answer citing [chunk:ID]; null without a model or with answer=false."
    )
    answer_kind: Literal["generated", "extractive"] | None = Field(
        None,
        description="generated: the model's answer, every citation checked against the evidence; "
        "extractive: the model's answer cited nothing valid or copied the prompt, so the best evidence "
        "sentences are returned with their references.",
    )
    cited: list[str] = Field(default_factory=list, description="Evidence references the answer cites.")
    answer_status: str = Field(description="How the answer was produced, or why there is none.")
    evidence: list[Evidence]
    notes: list[str] = Field(default_factory=list, description="Steps that were skipped or failed, and why.")
    took_ms: float


class SyncReport(BaseModel):
    """What one pass of a folder sync did: files (re-)ingested by content hash, documents removed."""

    root: str = Field(description="The folder synced (its real path; documents carry it as sync_root).")
    created: int
    replaced: int = Field(description="Files whose content (or metadata) changed since the last sync.")
    unchanged: int = Field(description="Files whose content hash is the same: nothing was re-embedded.")
    changed: list[str] = Field(description="Ids of documents created or replaced by this pass.")
    removed: list[str] = Field(description="Ids of documents removed because their files are gone.")
    failed: list[IngestFailure] = Field(description="Files not ingested, and why.")
    skipped: dict[str, int] = Field(default_factory=dict, description="Files not ingested, by reason.")
    chunks: int = Field(description="Chunks written in total.")
    notes: list[str] = Field(default_factory=list, description="Steps left out, and why.")
    seconds: float
