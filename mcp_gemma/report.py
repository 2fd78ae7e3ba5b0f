"""What ``health_check`` and ``mcp-gemma health`` report: Redis reachability and latency, versions,
loaded models and index sizes, and optionally the process's resource use (one builder, both front ends).
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import threading
import time
from importlib import metadata

from pydantic import BaseModel, Field

from mcp_gemma import __version__
from mcp_gemma.errors import McpGemmaError, StoreUnavailableError
from mcp_gemma.health import ComponentStatus
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
def dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


async def health_report(
    state: AppState, *, server_name: str = "mcp-gemma", include_metrics: bool = False
) -> HealthReport:
    """Ping Redis and collect versions and component status."""
    store = state.store
    try:
        latency = await store.ping_ms()
        restarting = store.restarting_for_s()
        if restarting is not None:  # it may answer already; the restart is not counted yet
            raise StoreUnavailableError(
                f"the embedded Redis stopped answering {restarting:.1f} s ago and is being restarted"
            )
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
        "mcp": dist_version("mcp"),
        "redis_py": dist_version("redis"),
        "rust_core": native.rust_core_version,
        "simd": native.simd_level(),
    }
    return HealthReport(
        status="ok" if redis.ok else "degraded",
        server=server_name,
        version=__version__,
        uptime_s=round(time.monotonic() - state.started_at, 3),
        data_dir=str(state.settings.data_dir),
        redis=redis,
        components=await state.components(),
        versions=versions,
        metrics=process_metrics() if include_metrics else None,
    )
