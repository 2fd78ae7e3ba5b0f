"""The middleware that records every tool call in the state's :class:`~mcp_gemma.metrics.CallMetrics`."""

from __future__ import annotations

import time
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_gemma.metrics import CallMetrics


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return bool(getattr(result, "is_error", False))


async def metrics_middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Time every ``tools/call`` and count its errors in the state's :class:`CallMetrics`."""
    if ctx.method != "tools/call" or not isinstance(ctx.params, dict):
        return await call_next(ctx)
    name = str(ctx.params.get("name", "?"))
    start = time.perf_counter()
    error = True
    try:
        result = await call_next(ctx)
        error = _is_error(result)
        return result
    finally:
        metrics: CallMetrics | None = getattr(ctx.lifespan_context, "metrics", None)
        if metrics is not None:
            metrics.record(name, (time.perf_counter() - start) * 1000, error)
