"""Operational tools: ``health_check``."""

from __future__ import annotations

import time
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_gemma.errors import McpGemmaError, NotFoundError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.metrics import ToolStats
from mcp_gemma.report import HealthReport, ProcessMetrics, RedisHealth, health_report, process_metrics
from mcp_gemma.state import AppState

__all__ = ["HealthReport", "ProcessMetrics", "RedisHealth", "SystemMetrics", "register", "system_metrics"]


class SystemMetrics(BaseModel):
    """Process, Redis and per-tool figures of this server."""

    uptime_s: float
    process: ProcessMetrics
    redis: dict[str, str | int | float | None]
    tools: dict[str, ToolStats]
    components: list[ComponentStatus]


_REDIS_FIELDS = (
    "used_memory",
    "used_memory_peak",
    "connected_clients",
    "instantaneous_ops_per_sec",
    "total_commands_processed",
    "keyspace_hits",
    "keyspace_misses",
    "aof_enabled",
)


async def system_metrics(state: AppState) -> SystemMetrics:
    """Collect the figures of :class:`SystemMetrics`."""
    redis: dict[str, str | int | float | None] = {}
    try:
        info = await state.store.info()
        redis = {k: info.get(k) for k in _REDIS_FIELDS}
        redis["latency_ms"] = round(await state.store.ping_ms(), 3)
    except McpGemmaError as exc:
        redis = {"error": str(exc)}
    return SystemMetrics(
        uptime_s=round(time.monotonic() - state.started_at, 3),
        process=process_metrics(),
        redis=redis,
        tools=state.metrics.snapshot(),
        components=await state.components(),
    )


def register(server: MCPServer[AppState]) -> None:
    """Add the operational tools to ``server``."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def health_check(
        ctx: Context[AppState],
        include_metrics: Annotated[
            bool, Field(description="Also report memory, CPU time and threads.")
        ] = False,
    ) -> HealthReport:
        """Report Redis reachability and latency, loaded models, index sizes and versions."""
        return await health_report(
            ctx.request_context.lifespan_context, server_name=server.name, include_metrics=include_metrics
        )

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def get_system_metrics(ctx: Context[AppState]) -> SystemMetrics:
        """Memory, CPU, Redis figures and per-tool call counts, errors and latency percentiles."""
        return await system_metrics(ctx.request_context.lifespan_context)

    @server.resource(
        "stats://{section}",
        name="system_stats",
        mime_type="application/json",
        description="stats://system: the same figures as get_system_metrics, as JSON.",
    )
    async def system_stats_resource(section: str, ctx: Context[AppState]) -> str:
        if section != "system":
            raise NotFoundError(f"unknown stats section {section!r}: read stats://system")
        return (await system_metrics(ctx.request_context.lifespan_context)).model_dump_json(indent=2)
