"""Settings of the agent memory tiers."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field, field_validator

TierName = Literal["working", "short_term", "long_term", "episodic", "semantic"]
TIER_NAMES: tuple[TierName, ...] = get_args(TierName)


class TierSettings(BaseModel):
    """Capacity and time-to-live of one memory tier."""

    capacity: int = Field(ge=1, description="Most items kept; the lowest-scoring is evicted beyond it.")
    ttl_s: float | None = Field(
        gt=0, description="Seconds an item lives without being written or recalled (None = forever)."
    )


def _tiers() -> dict[str, TierSettings]:
    return {
        "working": TierSettings(capacity=100, ttl_s=15 * 60),
        "short_term": TierSettings(capacity=1_000, ttl_s=60 * 60),
        "long_term": TierSettings(capacity=10_000, ttl_s=30 * 24 * 3600),
        "episodic": TierSettings(capacity=5_000, ttl_s=7 * 24 * 3600),
        "semantic": TierSettings(capacity=50_000, ttl_s=None),
    }


class MemorySettings(BaseModel):
    """Tiers, promotion and consolidation of the agent memory."""

    tiers: dict[str, TierSettings] = Field(default_factory=_tiers, description="Per-tier capacity and TTL.")
    max_content_chars: int = Field(20_000, ge=1, description="Longest memory accepted.")
    max_batch: int = Field(1_000, ge=1, le=100_000, description="Most memories one store call may write.")
    promote_after_accesses: int = Field(
        3, ge=1, description="Recalls after which short_term moves to long_term."
    )
    promote_importance: float = Field(0.8, ge=0, le=1, description="Importance at which an item is promoted.")
    duplicate_threshold: float = Field(
        0.92, ge=0, le=1, description="Cosine above which memories are merged."
    )
    recency_half_life_s: float = Field(24 * 3600, gt=0, description="Half-life of the recency factor.")
    bm25_analyzer: Literal["plain", "english"] = Field(
        "english",
        description="How recall's keyword side turns memories into terms (see rag.bm25_analyzer); 'english' "
        "(stems, no stop words) measured better on conversations (benches/README.md).",
    )
    fusion: Literal["adaptive", "coverage"] = Field(
        "adaptive",
        description="How recall fuses cosine and BM25 (match='hybrid'; see rag.fusion): 'adaptive' (BM25 / "
        "its bound as keyword evidence) or 'coverage' (half that, half the share of the query's IDF mass "
        "the memory holds; as rag.fusion). Recall stays on 'adaptive': on the conversations of "
        "benches/README.md 'coverage' ties it on the tuning dialogues (recall@10 0.765) and loses "
        "held out (0.713 against 0.730).",
    )
    time_match_boost: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Added to the similarity of a memory that happened in a time the recall query names "
        "('in March', 'the first week of April'); measured in benches/README.md.",
    )
    quantize: bool | Literal["auto"] = Field(
        "auto",
        description="Scan a scope's int8 codes first and re-rank the best 4k in f32 (scores stay exact). "
        "'auto' turns it on once a scope holds quantize_min_items memories (off again below half of that).",
    )
    quantize_min_items: int = Field(
        5_000,
        ge=1,
        description="Scope size at which quantize='auto' switches to the int8 first pass (measured at "
        "10k x 384: exact scan ~1.3 ms, int8 + re-rank ~0.2 ms, same top-32 on every query).",
    )
    consolidation_interval_s: float | None = Field(
        None, gt=0, description="Background consolidation (None = off)."
    )
    summary_max_tokens: int = Field(96, ge=8, le=1024, description="Token budget of a Gemma episode summary.")
    summary_timeout_s: float = Field(60.0, gt=0, description="Longest a Gemma episode summary may take.")

    @field_validator("tiers", mode="before")
    @classmethod
    def _merge_defaults(cls, value: object) -> object:
        """Fill tiers and fields left out (``MCP_GEMMA_MEMORY__TIERS__WORKING__TTL_S=5`` alone is enough)."""
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(TIER_NAMES))
        if unknown:
            raise ValueError(f"unknown memory tier(s) {unknown}; the tiers are {list(TIER_NAMES)}")
        merged: dict[str, object] = {}
        for name, default in _tiers().items():
            given = value.get(name)
            if isinstance(given, TierSettings):
                merged[name] = given
            elif isinstance(given, dict):
                merged[name] = {**default.model_dump(), **given}
            else:
                merged[name] = default if given is None else given
        return merged

    def tier(self, name: str) -> TierSettings:
        """The settings of tier ``name`` (always present after validation)."""
        return self.tiers[name]
