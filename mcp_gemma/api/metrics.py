"""``GET /metrics``: Prometheus text format from a registry of this app's own (tests start many).

Per REST endpoint: requests by status and a latency histogram (a middleware); per MCP tool: the
calls, errors and latency histogram the MCP server counts in the state's
:class:`~mcp_gemma.metrics.CallMetrics`; and, read at each scrape, the index sizes, whether each
model is loaded and the Redis round-trip time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import accumulate

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gemma import __version__
from mcp_gemma.health import ComponentStatus
from mcp_gemma.metrics import BUCKETS_S, CallMetrics
from mcp_gemma.state import SharedState

router = APIRouter(tags=["health"])

# Index sizes: (component kind, detail key) -> metric name.
SIZES = {
    ("vector_index", "documents"): "mcp_gemma_index_documents",
    ("vector_index", "chunks"): "mcp_gemma_index_chunks",
    ("vector_index", "vector_bytes"): "mcp_gemma_index_vector_bytes",
    ("vector_index", "vocabulary"): "mcp_gemma_index_vocabulary",
    ("memory", "indexed_items"): "mcp_gemma_memory_indexed_items",
    ("embedder", "cache_entries"): "mcp_gemma_embedding_cache_entries",
}


class ApiMetrics:
    """The registry of one REST app: its own request metrics and the state's figures."""

    def __init__(self, shared: SharedState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mcp_gemma_http_requests",
            "REST API requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mcp_gemma_http_request_duration_seconds",
            "REST API request latency (to the end of the response body).",
            ["method", "route"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.state_figures = _StateCollector(shared)
        self.registry.register(self.state_figures)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class _StateCollector(Collector):
    """The MCP tools' counters, and the figures :func:`metrics` reads just before rendering."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.components: list[ComponentStatus] = []
        self.redis_ms: float | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("mcp_gemma_info", "This server's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        state = self.shared.current
        if state is not None:
            yield from _tool_families(state.metrics)
        loaded = GaugeMetricFamily(
            "mcp_gemma_component_loaded", "1 when a model or index is loaded.", labels=["component", "kind"]
        )
        # One sample per size: summed over the components of its kind (a vector index per open
        # collection), since a family may not hold two samples with the same labels.
        totals: dict[str, float] = {}
        for c in self.components:
            loaded.add_metric([c.name, c.kind], 1.0 if c.loaded else 0.0)
            for (kind, key), name in SIZES.items():
                value = c.detail.get(key)
                if c.kind == kind and isinstance(value, int | float) and not isinstance(value, bool):
                    totals[name] = totals.get(name, 0.0) + float(value)
        yield loaded
        for (kind, key), name in SIZES.items():
            if name in totals:
                family = GaugeMetricFamily(
                    name, f"{kind}: {key}, over every component of the kind.", labels=[]
                )
                family.add_metric([], totals[name])
                yield family
        up = GaugeMetricFamily("mcp_gemma_redis_up", "1 when Redis answered the last scrape's PING.")
        up.add_metric([], 0.0 if self.redis_ms is None else 1.0)
        yield up
        if self.redis_ms is not None:
            ping = GaugeMetricFamily("mcp_gemma_redis_ping_seconds", "Round trip of one Redis PING.")
            ping.add_metric([], self.redis_ms / 1000)
            yield ping


def _tool_families(calls: CallMetrics) -> Iterator[Metric]:
    count = CounterMetricFamily("mcp_gemma_tool_calls", "MCP tool calls.", labels=["tool"])
    errors = CounterMetricFamily("mcp_gemma_tool_errors", "MCP tool calls that failed.", labels=["tool"])
    latency = HistogramMetricFamily(
        "mcp_gemma_tool_duration_seconds", "MCP tool call latency.", labels=["tool"]
    )
    for name, log in sorted(calls.tools.items()):
        count.add_metric([name], log.calls)
        errors.add_metric([name], log.errors)
        bounds = [str(b) for b in BUCKETS_S] + ["+Inf"]
        latency.add_metric(
            [name], list(zip(bounds, map(float, accumulate(log.bucket_counts)), strict=True)), log.total_s
        )
    yield from (count, errors, latency)


class MetricsMiddleware:
    """Time every REST request under the route that served it (``unmatched`` when none did)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: REST requests and MCP tool calls (counts, latency histograms), index
    sizes, model load state and Redis latency."""
    api: ApiMetrics = request.app.state.metrics
    shared: SharedState = request.app.state.shared
    state = shared.current
    figures = api.state_figures
    figures.components, figures.redis_ms = [], None
    if state is not None:
        figures.components = await state.components()
        try:
            figures.redis_ms = await state.store.ping_ms()
        except Exception:  # a scrape reports Redis down (mcp_gemma_redis_up 0); it does not fail
            figures.redis_ms = None
    return Response(generate_latest(api.registry), media_type=CONTENT_TYPE_LATEST)
