"""Settings of ingestion and search."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator


class RagSettings(BaseModel):
    """Chunking, limits and search defaults of the knowledge base."""

    chunk_size: int = Field(
        800,
        ge=50,
        le=20_000,
        description="Largest chunk, in characters (400-1200 measured in benches/README.md: 600 and 800 trade "
        "places by set).",
    )
    chunk_overlap: int = Field(100, ge=0, le=5_000, description="Characters shared by neighbouring chunks.")
    chunk_mode: Literal["sentence", "chars"] = Field(
        "sentence", description="Prefer sentence boundaries or not."
    )
    max_document_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest document accepted (UTF-8 bytes)."
    )
    max_metadata_bytes: int = Field(64 * 1024, ge=2, description="Largest metadata object (as JSON bytes).")
    max_metadata_depth: int = Field(
        16,
        ge=1,
        le=64,
        description="Deepest nesting of objects and lists in metadata (the object itself is 1). Clients "
        "parse results with a nesting limit (~200 with the envelope), so deep metadata would make "
        "every listing and search that returns it unreadable.",
    )
    max_batch_documents: int = Field(10_000, ge=1, description="Most documents in one batch_ingest call.")
    max_documents: int = Field(
        1_000_000,
        ge=1,
        description="Most documents the knowledge base (one namespace) holds: an ingest that would add "
        "documents past it is refused, naming this setting (replacing a document does not count).",
    )
    max_collections: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Most collections (separate knowledge bases, each with its own in-process index) one "
        "server opens, 'default' included: a call naming one more is refused, naming this setting.",
    )
    one_slot_collections: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="Collections whose keys all share one hash tag, so on Redis Cluster the whole "
        "collection lives in one slot on one master (a small collection kept together); the others, "
        "and 'default' always, spread over every master. Fixed once a collection holds data: a "
        "change is refused at its first use, naming this setting.",
    )

    @field_validator("one_slot_collections")
    @classmethod
    def _one_slot_names(cls, value: list[str]) -> list[str]:
        from mcp_gemma.security.principals import NAMESPACE_PATTERN

        for name in value:
            if name == "default" or not NAMESPACE_PATTERN.match(name):
                raise ValueError(
                    f"rag.one_slot_collections: {name[:80]!r} is not a collection that can be kept in one "
                    "slot (a collection name other than 'default': 1 to 64 letters, digits, '_', '.', '-')"
                )
        return value

    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest file read by batch_ingest.")
    max_results: int = Field(100, ge=1, le=10_000, description="Largest 'limit' a search accepts.")
    quantize: bool | Literal["auto"] = Field(
        "auto",
        description="Scan int8 codes first and re-rank the best 4k in f32 (scores stay exact). 'auto' turns "
        "it on once the index holds quantize_min_chunks chunks (off again below half of that).",
    )
    quantize_min_chunks: int = Field(
        50_000,
        ge=1,
        description="Index size at which quantize='auto' switches to the int8 first pass (measured: exact "
        "top-10 over 100k x 384 takes ~3x longer than int8 + re-rank, at recall@10 = 1.0).",
    )
    ann: bool | Literal["auto"] = Field(
        "auto",
        description="Serve unfiltered vector searches from an HNSW graph (approximate: recall@10 ~0.97 "
        "at the default ef; the scores of what it returns are exact). It is built in the background, "
        "exact scans serve until it is ready, filtered searches always scan. 'auto' builds it from "
        "ann_min_chunks chunks (dropped again below half of that).",
    )
    ann_min_chunks: int = Field(
        1_000_000,
        ge=1,
        description="Index size at which ann='auto' builds the graph (below, the int8 scan is fast).",
    )
    ann_ef_search: int = Field(
        64,
        ge=1,
        le=10_000,
        description="HNSW search width (at least the asked limit): more = better recall, slower.",
    )
    ann_m: int = Field(16, ge=2, le=64, description="HNSW links per node (twice that on the bottom layer).")
    ann_ef_construction: int = Field(
        200, ge=8, le=2_000, description="HNSW build width: more = a better graph, a slower build."
    )
    bm25_k1: float = Field(1.2, gt=0, le=10, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    bm25_analyzer: Literal["plain", "english"] = Field(
        "plain",
        description="How BM25 turns text into terms: 'plain' (lower-cased words) or 'english' (also "
        "identifier parts, stop words dropped, Snowball stems). Measured in benches/README.md: 'plain' "
        "wins on copied sentences, 'english' on short keyword queries over code.",
    )
    fusion: Literal["adaptive", "coverage", "weighted", "rrf"] = Field(
        "adaptive",
        description="Default hybrid fusion: 'adaptive' (the BM25 share follows how much of the query the "
        "best keyword hit covers, and is lower for a query of up to 4 terms over long documents; the "
        "keyword evidence is BM25 / its bound), 'coverage' (the same share; "
        "the keyword evidence is half BM25 / its bound, half the share of the query's IDF mass the chunk "
        "holds), 'weighted' (a fixed keyword_weight) or 'rrf' (reciprocal rank). All but 'rrf' score "
        "every candidate of both rankings. Measured in benches/README.md: 'coverage' has the better "
        "benchmark means but loses to vector search by more than 0.01 on the stdlib paraphrases.",
    )
    semantic_candidates: Literal["hybrid", "vector"] = Field(
        "hybrid",
        description="What semantic_search ranks before MMR: the hybrid fused candidates or the vector ones.",
    )
    keyword_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="BM25 share of fusion='weighted' (a call that passes keyword_weight uses it too).",
    )
    rrf_k: int = Field(60, ge=1, le=10_000, description="Rank constant of reciprocal rank fusion.")
    candidate_factor: int = Field(
        5, ge=1, le=100, description="Hybrid and MMR search look at limit × this many candidates per ranking."
    )
    ingest_group_documents: int = Field(
        64, ge=1, le=10_000, description="Documents written per Redis transaction during batch ingest."
    )
    write_behind_documents: int = Field(
        32,
        ge=0,
        le=1_024,
        description="One-document ingests (up to 8 KB of text) answer once recorded and queued, and are "
        "embedded and written in batches of up to this many (reads wait for them); 0 writes each "
        "before answering.",
    )
    snapshot: bool = Field(
        True,
        description="Save the in-process index to the data dir on shutdown and load it at start, "
        "replaying only the changes after it (a snapshot that does not match is rebuilt from Redis).",
    )
    change_log_max: int = Field(
        100_000,
        ge=1_000,
        description="Approximate length of the change log, shared by its 64 streams (one per slot group).",
    )
    allowed_url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts research_query may fetch from (empty = no fetching); "
        "'*.example.org' allows subdomains.",
    )
    allow_private_urls: bool = Field(
        False, description="Allow URLs that resolve to private or loopback addresses."
    )
    url_timeout_s: float = Field(10.0, gt=0, le=120, description="Time limit of one URL fetch.")
    url_max_bytes: int = Field(2 * 1024 * 1024, ge=1, description="Size limit of one URL fetch.")
    max_urls: int = Field(5, ge=0, le=50, description="Most URLs one research_query may fetch.")
    research_memory_min_similarity: float = Field(
        0.3,
        ge=0,
        le=1,
        description="research_query uses a recalled memory as evidence only from this similarity up.",
    )
    answer_max_tokens: int = Field(
        256, ge=16, le=4096, description="Token budget of a research_query answer."
    )
