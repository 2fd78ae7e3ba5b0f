"""``create_server(settings)``: the MCP server, its lifespan and its tools, resources and prompts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from mcp_gemma import __version__
from mcp_gemma.server.metrics import metrics_middleware
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState, SharedState

logger = logging.getLogger(__name__)

SERVER_NAME = "mcp-gemma"
INSTRUCTIONS = (
    "mcp-gemma gives you a local knowledge base (ingest documents, then search them by meaning or "
    "keywords), a tiered agent memory, and a local Gemma model. Call health_check to see what is "
    "loaded. Tool errors carry a message that says what to fix."
)


def create_server(settings: Settings, shared: SharedState | None = None) -> MCPServer[AppState]:
    """Build the server; nothing connects or loads until the lifespan runs.

    Pass ``shared`` to keep the state open across sessions (the HTTP transports do).
    """
    holder = shared or SharedState(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with holder.hold() as state:
            yield state

    server: MCPServer[AppState] = MCPServer(
        SERVER_NAME,
        title="mcp-gemma",
        description="Local knowledge base, agent memory and Gemma model over MCP.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[metrics_middleware],
    )
    from mcp_gemma.server import prompts
    from mcp_gemma.server.tools import agent, memory, ops, rag, reason

    ops.register(server)
    prompts.register(server)
    memory.register(server)
    rag.register(server)
    reason.register(server)
    agent.register(server, settings)
    return server
