"""Memory tools (``store_memory``, ``recall_memory``, ``clear_memory``, ``get_memory_stats``,
``consolidate_memory``) and resources ``memory://{tier}`` and ``memory://{tier}/{id}``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import Field, StringConstraints

from mcp_gemma.errors import McpGemmaError, NotFoundError
from mcp_gemma.memory.config import TIER_NAMES, TierName
from mcp_gemma.memory.models import (
    ClearReport,
    ConsolidationReport,
    MemoryStatsReport,
    RecallResult,
    StoreReport,
)
from mcp_gemma.memory.timeparse import epoch_seconds
from mcp_gemma.server.notify import memory_scope_of, memory_uri, resources_updated
from mcp_gemma.state import AppState

AGENT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(min_length=1)]
AgentId = Annotated[
    str,
    Field(
        pattern=AGENT_PATTERN,
        description="Namespace of the memories: an agent or client id. Each agent sees only its own "
        "memories plus those stored with shared=true.",
    ),
]
SessionId = Annotated[
    str | None, Field(max_length=128, description="Conversation / session the memory belongs to (optional).")
]
Tags = Annotated[list[Tag], Field(max_length=32, description="Labels to filter on later.")]


def register(server: MCPServer[AppState]) -> None:
    """Add the memory tools and resources to ``server``."""

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    )
    async def store_memory(
        ctx: Context[AppState],
        content: Annotated[
            Text | Annotated[list[Text], Field(min_length=1, max_length=1000)],
            Field(description="The text to remember, or a list of up to 1000 texts stored alike."),
        ],
        tier: Annotated[
            TierName,
            Field(
                description="working (current task, 15 min), short_term (1 h), long_term (30 d), "
                "episodic (events of a session, 7 d) or semantic (durable facts)."
            ),
        ] = "short_term",
        importance: Annotated[float, Field(ge=0, le=1, description="0 (trivial) to 1 (critical).")] = 0.5,
        tags: Tags | None = None,
        agent_id: AgentId = "default",
        session_id: SessionId = None,
        shared: Annotated[bool, Field(description="Store where every agent can recall it.")] = False,
        occurred_at: Annotated[
            datetime | Annotated[list[datetime | None], Field(min_length=1, max_length=1000)] | None,
            Field(
                description="When what it records happened (ISO 8601; one for all, or one per text), if not "
                "now: recall finds it for questions that name that time ('what did we do in March?')."
            ),
        ] = None,
    ) -> StoreReport:
        """Store a memory in a tier. A full tier evicts its lowest-scoring item (importance × recency ×
        access count); TTL tiers forget items nobody writes or recalls."""
        texts = [content] if isinstance(content, str) else content
        memory = ctx.request_context.lifespan_context.memory
        report = await memory.store(
            texts,
            tier=tier,
            importance=importance,
            tags=tags or [],
            agent_id=agent_id,
            session_id=session_id,
            shared=shared,
            occurred=[epoch_seconds(t) for t in occurred_at]
            if isinstance(occurred_at, list)
            else epoch_seconds(occurred_at),
        )
        await resources_updated(ctx, [memory_uri(report.tier, report.agent_id)])
        return report

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        )
    )
    async def recall_memory(
        ctx: Context[AppState],
        query: Annotated[
            str, Field(min_length=1, max_length=4000, description="What to remember, in words.")
        ],
        limit: Annotated[int, Field(ge=1, le=100, description="Most memories to return.")] = 5,
        tiers: Annotated[
            list[TierName] | None, Field(max_length=5, description="Tiers to search (default: all).")
        ] = None,
        tags: Annotated[
            list[Tag] | None, Field(max_length=32, description="Only memories with all these tags.")
        ] = None,
        session_id: SessionId = None,
        created_after: Annotated[
            datetime | None, Field(description="Only memories created at or after.")
        ] = None,
        created_before: Annotated[
            datetime | None, Field(description="Only memories created at or before.")
        ] = None,
        agent_id: AgentId = "default",
        include_shared: Annotated[bool, Field(description="Also search shared memories.")] = True,
        min_score: Annotated[float, Field(ge=0, le=1, description="Drop results scoring below this.")] = 0.0,
        match: Annotated[
            Literal["hybrid", "vector", "keyword"],
            Field(
                description="hybrid (meaning and words, fused per query), vector (meaning) or keyword (BM25)."
            ),
        ] = "hybrid",
        occurred_after: Annotated[
            datetime | None, Field(description="Only memories that happened at or after (occurred_at).")
        ] = None,
        occurred_before: Annotated[
            datetime | None, Field(description="Only memories that happened at or before (occurred_at).")
        ] = None,
        time_aware: Annotated[
            bool,
            Field(
                description="Favour memories that happened in a time the query names ('in March', 'the "
                "first week of April', 'last week'): their similarity gets memory.time_match_boost."
            ),
        ] = True,
    ) -> RecallResult:
        """Recall memories by meaning and words, ranked by similarity × importance × recency, each with why
        it ranked. Recalling counts as an access: it refreshes TTLs and may promote short_term items."""
        memory = ctx.request_context.lifespan_context.memory
        return await memory.recall(
            query,
            k=limit,
            tiers=tiers,
            tags=tags or [],
            session_id=session_id,
            created_after=epoch_seconds(created_after),
            created_before=epoch_seconds(created_before),
            agent_id=agent_id,
            include_shared=include_shared,
            min_score=min_score,
            match=match,
            occurred_after=epoch_seconds(occurred_after),
            occurred_before=epoch_seconds(occurred_before),
            time_aware=time_aware,
        )

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def clear_memory(
        ctx: Context[AppState],
        confirm: Annotated[bool, Field(description="Must be true: clearing cannot be undone.")] = False,
        tier: Annotated[TierName | None, Field(description="Tier to clear (default: every tier).")] = None,
        agent_id: AgentId = "default",
    ) -> ClearReport:
        """Delete every memory of one tier, or of all tiers, of one agent. Requires confirm: true."""
        memory = ctx.request_context.lifespan_context.memory
        report = await memory.clear(tier, agent_id=agent_id, confirm=confirm)
        cleared = {(t, report.agent_id) for t in report.removed}
        await resources_updated(
            ctx, [memory_uri(t, a) for t, a in sorted(cleared)], lambda uri: memory_scope_of(uri) in cleared
        )
        return report

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def get_memory_stats(ctx: Context[AppState], agent_id: AgentId = "default") -> MemoryStatsReport:
        """Per tier: count, capacity, bytes, oldest / newest, expiries due, hits, misses and hit rate."""
        return await ctx.request_context.lifespan_context.memory.stats(agent_id)

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def consolidate_memory(
        ctx: Context[AppState],
        agent_id: AgentId = "default",
        tiers: Annotated[
            list[TierName] | None, Field(max_length=5, description="Tiers to de-duplicate (default: all).")
        ] = None,
        threshold: Annotated[
            float | None,
            Field(ge=0.5, le=1, description="Cosine at or above which memories merge (default 0.92)."),
        ] = None,
        session_id: Annotated[
            str | None, Field(max_length=128, description="Only summarise this session's episode.")
        ] = None,
        dry_run: Annotated[
            bool, Field(description="Report what would change without changing anything.")
        ] = False,
        summarise: Annotated[
            bool, Field(description="Let Gemma summarise episodes (loads the model on first use).")
        ] = True,
    ) -> ConsolidationReport:
        """Promote short_term items that earned it, merge near-duplicates (keeping provenance) and, when
        a Gemma model is loaded, summarise each session's episodic events into one semantic fact."""
        # Imported here: with numpy and redis-py they would delay ``tools/list`` (see ``server.ready``).
        from mcp_gemma.memory.consolidation import consolidate
        from mcp_gemma.store.redis import redis_guard

        memory = ctx.request_context.lifespan_context.memory
        return await redis_guard(consolidate)(
            memory,
            agent_id=agent_id,
            tiers=tiers,
            threshold=threshold,
            session_id=session_id,
            dry_run=dry_run,
            summarise=summarise,
        )

    @server.resource(
        "memory://{tier}{?agent_id}",
        mime_type="application/json",
        description="The newest 100 memories of a tier (agent_id defaults to 'default').",
    )
    async def memory_tier(ctx: Context[AppState], tier: str, agent_id: str = "default") -> str:
        if tier not in TIER_NAMES:
            raise ResourceNotFoundError(f"unknown memory tier {tier!r}; use one of {', '.join(TIER_NAMES)}")
        memory = ctx.request_context.lifespan_context.memory
        try:
            items = await memory.list_tier(tier, agent_id=agent_id, limit=100)
        except McpGemmaError as exc:
            raise ResourceError(str(exc)) from exc
        return json.dumps([item.model_dump(mode="json") for item in items])

    @server.resource(
        "memory://{tier}/{id}{?agent_id}",
        mime_type="application/json",
        description="One memory by id (agent_id defaults to 'default').",
    )
    async def memory_item(ctx: Context[AppState], tier: str, id: str, agent_id: str = "default") -> str:
        if tier not in TIER_NAMES:
            raise ResourceNotFoundError(f"unknown memory tier {tier!r}; use one of {', '.join(TIER_NAMES)}")
        memory = ctx.request_context.lifespan_context.memory
        try:
            item = await memory.get(id, agent_id=agent_id, tier=tier)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except McpGemmaError as exc:
            raise ResourceError(str(exc)) from exc
        return item.model_dump_json()
