"""The agent memory: :class:`MemoryService`, what the front ends and the other services call.

It puts together the storage (:mod:`mcp_gemma.memory.repository`), recall (:mod:`.recall`), the
admin reads and clearing (:mod:`.admin`) and background consolidation (:mod:`.consolidation`); those
modules depend on the repository only, so nothing here imports back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mcp_gemma.health import ComponentStatus
from mcp_gemma.memory.admin import clear as clear_tiers
from mcp_gemma.memory.admin import get_item
from mcp_gemma.memory.admin import list_tier as list_newest
from mcp_gemma.memory.consolidation import consolidate_every
from mcp_gemma.memory.models import ClearReport, MemoryItem, MemoryStatsReport, RecallResult
from mcp_gemma.memory.recall import recall as run_recall
from mcp_gemma.memory.repository import LlmSource, MemoryRepository
from mcp_gemma.memory.stats import tier_stats
from mcp_gemma.store.redis import redis_guard

__all__ = ["LlmSource", "MemoryService"]


class MemoryService(MemoryRepository):
    """Store, recall, clear and describe memories."""

    async def recall(self, query: str, **filters: Any) -> RecallResult:
        """Memories most relevant to ``query`` (see :func:`mcp_gemma.memory.recall.recall`)."""
        return await run_recall(self, query, **filters)

    async def get(self, memory_id: str, *, agent_id: str = "default", tier: str | None = None) -> MemoryItem:
        """One memory by id (see :func:`mcp_gemma.memory.admin.get_item`)."""
        return await get_item(self, memory_id, agent_id=agent_id, tier=tier)

    async def list_tier(self, tier: str, *, agent_id: str = "default", limit: int = 100) -> list[MemoryItem]:
        """The newest memories of one tier (see :func:`mcp_gemma.memory.admin.list_tier`)."""
        return await list_newest(self, tier, agent_id=agent_id, limit=limit)

    async def clear(
        self, tier: str | None, *, agent_id: str = "default", confirm: bool = False
    ) -> ClearReport:
        """Delete a tier or every tier of an agent (see :func:`mcp_gemma.memory.admin.clear`)."""
        return await clear_tiers(self, tier, agent_id=agent_id, confirm=confirm)

    @redis_guard
    async def stats(self, agent_id: str = "default") -> MemoryStatsReport:
        """Per tier: counts, bytes, ages, expiries and hit rates (see :func:`.stats.tier_stats`)."""
        return await tier_stats(self.redis.client, self.keys, self.settings, agent_id)

    @redis_guard
    async def agent_ids(self) -> list[str]:
        """Every agent id (memory scope) that has stored something, sorted."""
        return await self.all_scopes()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self, llm_source: LlmSource) -> None:
        """Bind the language model (if any) and start background consolidation when configured."""
        self.llm_source = llm_source
        interval = self.settings.consolidation_interval_s
        if interval is not None and self._background is None:
            self._background = asyncio.get_running_loop().create_task(consolidate_every(self, interval))

    async def close(self) -> None:
        """Stop background consolidation and drop the in-process indexes."""
        task, self._background = self._background, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.scopes.clear()

    def status(self) -> ComponentStatus:
        """What health_check reports about the memory."""
        detail: dict[str, str | int | float | bool | None] = {
            "scopes_loaded": len(self.scopes),
            "indexed_items": sum(len(i) for i in self.scopes.values()),
            "background_consolidation_s": self.settings.consolidation_interval_s,
        }
        return ComponentStatus(name="memory", kind="memory", loaded=True, detail=detail)
