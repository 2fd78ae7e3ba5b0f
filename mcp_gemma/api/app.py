"""``create_api``: the FastAPI app of the REST API, over the process's shared state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from mcp_gemma import __version__
from mcp_gemma.api.chat import router as chat_router
from mcp_gemma.api.problems import install_problem_handlers
from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState, SharedState


def get_state(request: Request) -> AppState:
    """The process's :class:`AppState` (a 503 problem while it is not open)."""
    shared: SharedState = request.app.state.shared
    state = shared.current
    if state is None:
        raise StoreUnavailableError("the server is still starting (or its store failed to open); retry")
    return state


State = Annotated[AppState, Depends(get_state)]


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
    app = FastAPI(
        title="mcp-gemma",
        version=__version__,
        description="Local knowledge base, tiered agent memory and a local Gemma model, over REST.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.shared = shared
    app.state.settings = settings
    install_problem_handlers(app)
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

    return app
