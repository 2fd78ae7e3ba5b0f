"""``create_api``: the FastAPI app of the REST API, over the process's shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from mcp_gemma import __version__
from mcp_gemma.agent.runs import AgentRuns
from mcp_gemma.api import agent, documents, memory, metrics, reason, search
from mcp_gemma.api.chat import router as chat_router
from mcp_gemma.api.console import serve_console
from mcp_gemma.api.deps import State, get_state
from mcp_gemma.api.guards import install_guards
from mcp_gemma.api.problems import finish_openapi, install_problem_handlers
from mcp_gemma.health import ComponentStatus
from mcp_gemma.settings import Settings
from mcp_gemma.state import SharedState

__all__ = ["State", "create_api", "get_state"]


class Liveness(BaseModel):
    """``GET /healthz``: the process answers."""

    status: str
    version: str


class Readiness(BaseModel):
    """``GET /readyz``: the store is open and each component's state."""

    ready: bool
    components: list[ComponentStatus]


def create_api(settings: Settings, shared: SharedState) -> FastAPI:
    """The REST API; its routes reach the services through ``shared``."""
    http = settings.http
    runs = AgentRuns(kept=http.agent_runs_kept, active=http.agent_runs_active)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runs.serving():
            app.state.agent_runs = runs
            yield
        app.state.agent_runs = None

    app = FastAPI(
        title="mcp-gemma",
        version=__version__,
        description="Local knowledge base, tiered agent memory and a local Gemma model, over REST. "
        "Errors are RFC 9457 application/problem+json.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.shared = shared
    app.state.settings = settings
    app.state.agent_runs = None
    app.state.metrics = metrics.ApiMetrics(shared)
    install_problem_handlers(app)
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    install_guards(app, http)
    app.include_router(chat_router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Liveness:
        """Liveness: the process is up (does not touch the store)."""
        return Liveness(status="ok", version=__version__)

    @app.get("/readyz", tags=["health"])
    async def readyz(state: State) -> Readiness:
        """Readiness: the store answers; the components and whether each is loaded."""
        await state.store.ping_ms()
        return Readiness(ready=True, components=await state.components())

    app.include_router(documents.router)
    app.include_router(search.router)
    app.include_router(memory.router)
    app.include_router(reason.router)
    app.include_router(agent.router)
    app.include_router(metrics.router)

    def openapi() -> dict[str, Any]:
        return finish_openapi(app, extra_models=(documents.IngestRequest,))

    app.openapi = openapi  # type: ignore[method-assign]
    serve_console(app)  # what no route matches: the web console's files
    return app
