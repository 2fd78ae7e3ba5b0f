"""``/v1/memory``: store, recall, clear and describe the tiered agent memory."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mcp_gemma.api.access import Caller, checked
from mcp_gemma.api.deps import State
from mcp_gemma.api.problems import problem_responses
from mcp_gemma.memory.config import TierName
from mcp_gemma.memory.models import (
    ClearReport,
    MemoryItem,
    MemoryStatsReport,
    RecallResult,
    StoreReport,
)
from mcp_gemma.memory.timeparse import epoch_seconds
from mcp_gemma.security.rights import check_tool

router = APIRouter(prefix="/v1", tags=["memory"], responses=problem_responses(413, 422, 503))

AGENT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
AGENT_HELP = (
    "Namespace of the memories: an agent or client id. Each agent sees only its own memories plus "
    "those stored with shared=true."
)
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(min_length=1)]
AgentQuery = Annotated[str, Query(pattern=AGENT_PATTERN, description=AGENT_HELP)]


class StoreMemoryRequest(BaseModel):
    """Memories to store in one tier."""

    model_config = ConfigDict(extra="forbid")

    content: Text | Annotated[list[Text], Field(min_length=1, max_length=1000)] = Field(
        description="The text to remember, or a list of up to 1000 texts stored alike."
    )
    tier: TierName = Field(
        "short_term",
        description="working (15 min), short_term (1 h), long_term (30 d), episodic (7 d) or semantic.",
    )
    importance: float = Field(0.5, ge=0, le=1, description="0 (trivial) to 1 (critical).")
    tags: list[Tag] = Field(default_factory=list, max_length=32, description="Labels to filter on later.")
    agent_id: str = Field("default", pattern=AGENT_PATTERN, description=AGENT_HELP)
    session_id: str | None = Field(None, max_length=128, description="Conversation the memory belongs to.")
    shared: bool = Field(False, description="Store where every agent can recall it.")
    occurred_at: datetime | Annotated[list[datetime | None], Field(min_length=1, max_length=1000)] | None = (
        Field(None, description="When what it records happened (ISO 8601; one for all, or one per text).")
    )


class RecallRequest(BaseModel):
    """What to recall, and from where."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000, description="What to remember, in words.")
    limit: int = Field(5, ge=1, le=100, description="Most memories to return.")
    tiers: list[TierName] | None = Field(None, max_length=5, description="Tiers to search (default: all).")
    tags: list[Tag] = Field(
        default_factory=list, max_length=32, description="Only memories with all these tags."
    )
    session_id: str | None = Field(None, max_length=128, description="Only this session's memories.")
    created_after: datetime | None = Field(None, description="Only memories created at or after.")
    created_before: datetime | None = Field(None, description="Only memories created at or before.")
    agent_id: str = Field("default", pattern=AGENT_PATTERN, description=AGENT_HELP)
    include_shared: bool = Field(True, description="Also search shared memories.")
    min_score: float = Field(0.0, ge=0, le=1, description="Drop results scoring below this.")
    match: Literal["hybrid", "vector", "keyword"] = Field(
        "hybrid", description="hybrid (meaning and words), vector (meaning) or keyword (BM25)."
    )
    occurred_after: datetime | None = Field(None, description="Only memories that happened at or after.")
    occurred_before: datetime | None = Field(None, description="Only memories that happened at or before.")
    time_aware: bool = Field(True, description="Favour memories that happened in a time the query names.")


@router.post("/memory")
async def store_memory(body: StoreMemoryRequest, state: State, caller: Caller) -> StoreReport:
    """Store memories in a tier (the store_memory tool); a full tier evicts its lowest-scoring item."""
    occurred = body.occurred_at
    args = {"agent_id": body.agent_id, "shared": body.shared}
    async with checked(state, caller, "store_memory", args, [f"agent:{body.agent_id}", f"tier:{body.tier}"]):
        return await _store(body, state, occurred)


async def _store(body: StoreMemoryRequest, state: State, occurred: Any) -> StoreReport:
    return await state.memory.store(
        [body.content] if isinstance(body.content, str) else body.content,
        tier=body.tier,
        importance=body.importance,
        tags=body.tags,
        agent_id=body.agent_id,
        session_id=body.session_id,
        shared=body.shared,
        occurred=[epoch_seconds(t) for t in occurred]
        if isinstance(occurred, list)
        else epoch_seconds(occurred),
    )


@router.post("/memory/recall")
async def recall_memory(body: RecallRequest, state: State, caller: Caller) -> RecallResult:
    """Recall memories by meaning and words, ranked by similarity × importance × recency (the
    recall_memory tool). Recalling counts as an access: it refreshes TTLs."""
    check_tool(caller, "recall_memory", {"agent_id": body.agent_id})
    return await state.memory.recall(
        body.query,
        k=body.limit,
        tiers=body.tiers,
        tags=body.tags,
        session_id=body.session_id,
        created_after=epoch_seconds(body.created_after),
        created_before=epoch_seconds(body.created_before),
        agent_id=body.agent_id,
        include_shared=body.include_shared,
        min_score=body.min_score,
        match=body.match,
        occurred_after=epoch_seconds(body.occurred_after),
        occurred_before=epoch_seconds(body.occurred_before),
        time_aware=body.time_aware,
    )


@router.delete("/memory")
async def clear_memory(
    state: State,
    confirm: Annotated[bool, Query(description="Must be true: clearing cannot be undone.")] = False,
    tier: Annotated[TierName | None, Query(description="Tier to clear (default: every tier).")] = None,
    agent_id: AgentQuery = "default",
    *,
    caller: Caller,
) -> ClearReport:
    """Delete every memory of one tier, or of all tiers, of one agent; needs ``confirm=true``."""
    ids = [f"agent:{agent_id}", *([f"tier:{tier}"] if tier else [])]
    async with checked(state, caller, "clear_memory", {"agent_id": agent_id}, ids):
        return await state.memory.clear(tier, agent_id=agent_id, confirm=confirm)


@router.get("/memory/stats")
async def memory_stats(state: State, caller: Caller, agent_id: AgentQuery = "default") -> MemoryStatsReport:
    """Per tier: count, capacity, bytes, oldest / newest, expiries due, hits, misses and hit rate."""
    check_tool(caller, "get_memory_stats", {"agent_id": agent_id})
    return await state.memory.stats(agent_id)


class TierItems(BaseModel):
    """The newest memories of one tier of one agent, each with its expiry."""

    tier: TierName
    agent_id: str
    items: list[MemoryItem] = Field(description="Newest first; expires_at says when each TTL runs out.")


@router.get("/memory/tiers/{tier}")
async def memory_tier_items(
    state: State,
    tier: Annotated[TierName, Path(description="working, short_term, long_term, episodic or semantic.")],
    agent_id: AgentQuery = "default",
    limit: Annotated[int, Query(ge=1, le=1_000, description="Most memories to return.")] = 100,
    *,
    caller: Caller,
) -> TierItems:
    """The newest memories of a tier (the memory://{tier} resource); reading them is not a recall, so
    it neither refreshes their TTLs nor counts as an access."""
    check_tool(caller, "get_memory_stats", {"agent_id": agent_id})
    items = await state.memory.list_tier(tier, agent_id=agent_id, limit=limit)
    return TierItems(tier=tier, agent_id=agent_id, items=items)
