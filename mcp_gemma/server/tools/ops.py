"""Operational tools: ``health_check``."""

from __future__ import annotations

import functools
import os
import platform
import resource
import threading
import time
from importlib import metadata
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_gemma import __version__
from mcp_gemma.errors import McpGemmaError, NotFoundError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.metrics import ToolStats
from mcp_gemma.state import AppState


class RedisHealth(BaseModel):
    """Reachability of the Redis server."""

    ok: bool
    kind: str = Field(description="embedded, external or cluster")
    where: str = Field(description="Socket path or URL (password masked).")
    version: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    restarts: int = Field(0, description="Times the embedded server was found dead and restarted.")


class ProcessMetrics(BaseModel):
    """Resource use of the server process."""

    rss_mib: float = Field(description="Resident memory now.")
    max_rss_mib: float = Field(description="Peak resident memory.")
    cpu_user_s: float
    cpu_system_s: float
    threads: int
    open_fds: int | None


class HealthReport(BaseModel):
    """What the server is, what it talks to and what it has loaded."""

    status: str = Field(description="'ok' when Redis answers, else 'degraded'.")
    server: str
    version: str
    uptime_s: float
    data_dir: str
    redis: RedisHealth
    components: list[ComponentStatus]
    versions: dict[str, str]
    metrics: ProcessMetrics | None = None


def process_metrics() -> ProcessMetrics:
    """RSS, CPU time, threads and open files of this process (Linux /proc, else getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = usage.ru_maxrss / 1024
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        pass
    try:
        fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    return ProcessMetrics(
        rss_mib=round(rss, 1),
        max_rss_mib=round(usage.ru_maxrss / 1024, 1),
        cpu_user_s=round(usage.ru_utime, 3),
        cpu_system_s=round(usage.ru_stime, 3),
        threads=threading.active_count(),
        open_fds=fds,
    )


@functools.cache  # reading a distribution's metadata parses files: ~2 ms a call
def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


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
        state = ctx.request_context.lifespan_context
        store = state.store
        try:
            latency = await store.ping_ms()
            redis = RedisHealth(
                ok=True,
                kind=store.kind,
                where=store.where,
                version=await store.server_version(),
                latency_ms=round(latency, 3),
                restarts=store.generation,
            )
        except McpGemmaError as exc:
            redis = RedisHealth(
                ok=False, kind=store.kind, where=store.where, error=str(exc), restarts=store.generation
            )
        from mcp_gemma import native

        versions = {
            "mcp_gemma": __version__,
            "python": platform.python_version(),
            "mcp": _dist_version("mcp"),
            "redis_py": _dist_version("redis"),
            "rust_core": native.rust_core_version,
            "simd": native.simd_level(),
        }
        return HealthReport(
            status="ok" if redis.ok else "degraded",
            server=server.name,
            version=__version__,
            uptime_s=round(time.monotonic() - state.started_at, 3),
            data_dir=str(state.settings.data_dir),
            redis=redis,
            components=await state.components(),
            versions=versions,
            metrics=process_metrics() if include_metrics else None,
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
