"""Per-tool call counts, errors and latency (a front end records them: the MCP server in a middleware)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel

_WINDOW = 1024  # latencies kept per tool for percentiles


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
        log = self.tools.setdefault(tool, ToolCallLog())
        log.calls += 1
        log.errors += int(error)
        log.latencies_ms.append(ms)

    def snapshot(self) -> dict[str, ToolStats]:
        """Stats per tool, by name."""
        return {name: log.stats() for name, log in sorted(self.tools.items())}
