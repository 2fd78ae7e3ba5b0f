"""What every route depends on: the process's :class:`AppState`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.state import AppState, SharedState


async def get_state(request: Request) -> AppState:
    """The process's :class:`AppState` (a 503 problem while it is not open). Async on purpose:
    FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop on every request."""
    shared: SharedState = request.app.state.shared
    state = shared.current
    if state is None:
        raise StoreUnavailableError("the server is still starting (or its store failed to open); retry")
    return state


State = Annotated[AppState, Depends(get_state)]
