"""What the memory service returns: pydantic models that double as the tools' structured output."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from mcp_gemma.memory.config import TierName


class Provenance(BaseModel):
    """A memory that was merged into, or summarised into, another."""

    id: str = Field(description="Id the merged memory had.")
    tier: TierName
    content: str = Field(description="Its text at the time of the merge.")
    created_at: datetime
    similarity: float | None = Field(None, description="Cosine to the kept memory (merges only).")


class MemoryItem(BaseModel):
    """One stored memory."""

    id: str
    tier: TierName
    content: str
    importance: float = Field(ge=0, le=1)
    tags: list[str]
    agent_id: str = Field(description="Whose memory this is ('shared' = visible to every agent).")
    session_id: str | None = None
    created_at: datetime
    accessed_at: datetime = Field(description="Last write or recall.")
    access_count: int = Field(ge=1, description="1 for the write plus one per recall.")
    expires_at: datetime | None = Field(None, description="When the tier's TTL removes it unless it is used.")
    occurred_at: datetime | None = Field(
        None,
        description="When what it records happened, as the writer said (created_at is when it was stored).",
    )
    source: str = Field(description="stored, merged, summary or promoted.")
    provenance: list[Provenance] = Field(default_factory=list, description="Memories merged into this one.")


class EvictedMemory(BaseModel):
    """A memory removed to keep a tier within its capacity."""

    id: str
    tier: TierName
    retention: float = Field(description="importance × recency × access_count when it was evicted.")


class StoreReport(BaseModel):
    """What a store call wrote and what it evicted to make room."""

    ids: list[str] = Field(description="Ids of the new memories, in input order.")
    tier: TierName
    agent_id: str
    session_id: str | None
    expires_at: datetime | None = Field(description="When the new memories expire unless used.")
    evicted: list[EvictedMemory] = Field(
        description="Lower-scoring memories removed because the tier was full."
    )
    tier_count: int = Field(description="Items in the tier after the write.")


class RecallHit(BaseModel):
    """One recalled memory with the factors of its score."""

    item: MemoryItem
    score: float = Field(description="similarity × importance × recency.")
    similarity: float = Field(
        description="How well it matches the query: cosine and BM25 fused as memory.fusion says (plus "
        "memory.time_match_boost when it happened in a time the query names)."
    )
    cosine: float | None = Field(None, description="Cosine similarity of the embeddings.")
    keyword_score: float | None = Field(
        None,
        description="Keyword evidence (0..1): BM25 score over the query's bound (memory.fusion 'adaptive'), "
        "or its mean with the memory's share of the query's IDF mass ('coverage'); absent when no query "
        "word matches.",
    )
    time_match: bool = Field(False, description="It happened within the time the query names.")
    recency: float
    why: str = Field(description="Why it ranked where it did.")
    promoted_to: TierName | None = Field(None, description="Set when this recall promoted the memory.")


class RecallResult(BaseModel):
    """Memories that match a query, best first."""

    query: str
    hits: list[RecallHit]
    tiers: list[TierName] = Field(description="Tiers searched.")
    agent_ids: list[str] = Field(description="Namespaces searched.")
    candidates: int = Field(description="Memories that passed the filters.")


class TierStats(BaseModel):
    """Size, age, expiry and hit rate of one tier."""

    tier: TierName
    count: int
    capacity: int
    bytes: int = Field(
        description="Redis memory used by the tier's items (MEMORY USAGE, sampled when large)."
    )
    ttl_s: float | None
    oldest_at: datetime | None
    newest_at: datetime | None
    expiring_within_ttl_10pct: int = Field(description="Items due to expire within a tenth of the TTL.")
    expired_pending: int = Field(description="Items past their expiry whose index entries are not yet swept.")
    hits: int = Field(description="Recalls (or reads) that returned something from this tier.")
    misses: int = Field(description="Recalls (or reads) of this tier that returned nothing.")
    hit_rate: float | None = Field(description="hits / (hits + misses); None before the first recall.")
    evicted: int
    expired: int
    promoted: int


class MemoryStatsReport(BaseModel):
    """Per-tier statistics of one namespace."""

    agent_id: str
    tiers: list[TierStats]
    total_count: int
    total_bytes: int


class ClearReport(BaseModel):
    """What a clear removed."""

    agent_id: str
    removed: dict[str, int] = Field(description="Memories removed, per tier.")


class MergeGroup(BaseModel):
    """Near-duplicates merged into one memory."""

    kept_id: str
    tier: TierName
    content: str
    merged_ids: list[str]
    min_similarity: float


class Promotion(BaseModel):
    """A memory moved up a tier."""

    id: str
    from_tier: TierName
    to_tier: TierName
    reason: str


class EpisodeSummary(BaseModel):
    """A session's episodic memories summarised into one semantic fact."""

    session_id: str
    semantic_id: str | None = Field(description="The new semantic memory (None in a dry run).")
    summary: str
    source_ids: list[str]


class ConsolidationReport(BaseModel):
    """What consolidation merged, promoted and summarised (or would, in a dry run)."""

    agent_id: str
    dry_run: bool
    merged: list[MergeGroup]
    promoted: list[Promotion]
    summaries: list[EpisodeSummary]
    removed: int = Field(description="Memories deleted by merging (0 in a dry run).")
    notes: list[str] = Field(description="Anything a person should know, e.g. that no model summarised.")
