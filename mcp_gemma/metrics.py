"""Per-tool call counts, errors and latency (a front end records them: the MCP server in a middleware)."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel

_WINDOW = 1024  # latencies kept per tool for percentiles
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds of the latency histogram (seconds), as Prometheus exports it."""


class ToolStats(BaseModel):
    """How one tool has been doing since start."""

    calls: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class ToolCallLog:
    """Rolling latency window and counters of one tool."""

    calls: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    """Calls per latency bucket since start (not cumulative); the last one is past every bound."""
    total_s: float = 0.0

    def add(self, ms: float, error: bool) -> None:
        """Count one call of ``ms`` milliseconds."""
        self.calls += 1
        self.errors += int(error)
        self.latencies_ms.append(ms)
        seconds = ms / 1000
        self.total_s += seconds
        self.bucket_counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1

    def stats(self) -> ToolStats:
        ordered = sorted(self.latencies_ms) or [0.0]

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

        return ToolStats(
            calls=self.calls,
            errors=self.errors,
            p50_ms=pct(0.5),
            p99_ms=pct(0.99),
            max_ms=round(ordered[-1], 3),
        )


class CallMetrics:
    """Counters for every tool of this process."""

    def __init__(self) -> None:
        self.tools: dict[str, ToolCallLog] = {}

    def record(self, tool: str, ms: float, error: bool) -> None:
        self.tools.setdefault(tool, ToolCallLog()).add(ms, error)

    def snapshot(self) -> dict[str, ToolStats]:
        """Stats per tool, by name."""
        return {name: log.stats() for name, log in sorted(self.tools.items())}
