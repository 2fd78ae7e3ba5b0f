"""``create_server(settings)``: the MCP server, its lifespan and its tools, resources and prompts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import (
    CallToolResult,
    InputRequiredResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
)
from pydantic import ValidationError

from mcp_gemma import __version__
from mcp_gemma.errors import McpGemmaError
from mcp_gemma.server import completion, notify
from mcp_gemma.server.access import access_control, note_failure
from mcp_gemma.server.arguments import ensure_strict, refused_arguments, strict_arguments
from mcp_gemma.server.metrics import metrics_middleware
from mcp_gemma.server.pagination import page
from mcp_gemma.server.ready import StateGate, readiness_middleware
from mcp_gemma.server.resume import install_key_gate, shared_security
from mcp_gemma.server.schemas import compact_schemas_middleware
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState, SharedState

logger = logging.getLogger(__name__)

SERVER_NAME = "mcp-gemma"
INSTRUCTIONS = (
    "mcp-gemma gives you a local knowledge base (ingest documents, then search them by meaning or "
    "keywords), a tiered agent memory, and a local Gemma model. Call health_check to see what is "
    "loaded. Tool errors carry a message that says what to fix."
)


class GemmaServer(MCPServer[AppState]):
    """The SDK's server, with domain errors mapped to tool errors in one place.

    The services raise :class:`~mcp_gemma.errors.McpGemmaError`, a plain exception. The SDK reports a
    ``ToolError`` to the client as a tool result with ``isError: true`` and its text, and any other
    exception without its text; so a domain error that escapes a tool becomes a ``ToolError`` here,
    worded as the SDK words one ("Error executing tool <name>: <message>"). It also pages the
    ``*/list`` answers (the SDK's handlers ignore the cursor).
    """

    list_page_size = 100
    """Items per page of the ``*/list`` answers (``create_server`` sets it from the settings)."""

    plugin_writes: set[str]
    """The server plugins' tools that change data (access control and audit read it; filled in when
    the plugins register)."""

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools, nxt = page(await self.list_tools(), _cursor(params), self.list_page_size)
        return ListToolsResult(tools=tools, next_cursor=nxt)

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        resources, nxt = page(await self.list_resources(), _cursor(params), self.list_page_size)
        return ListResourcesResult(resources=resources, next_cursor=nxt)

    async def _handle_list_resource_templates(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        templates, nxt = page(await self.list_resource_templates(), _cursor(params), self.list_page_size)
        return ListResourceTemplatesResult(resource_templates=templates, next_cursor=nxt)

    async def _handle_list_prompts(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListPromptsResult:
        prompts, nxt = page(await self.list_prompts(), _cursor(params), self.list_page_size)
        return ListPromptsResult(prompts=prompts, next_cursor=nxt)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            ensure_strict(tool)
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            cause = exc.__cause__
            note_failure(cause or exc)
            if isinstance(cause, McpGemmaError):
                raise ToolError(f"Error executing tool {name}: {cause}") from cause
            raise
        except ToolError as exc:
            cause = exc.__cause__
            note_failure(cause or exc)
            # the arguments did not validate (the SDK's only ToolError from a ValidationError)
            if isinstance(cause, ValidationError) and tool is not None:
                raise ToolError(f"Error executing tool {name}: {refused_arguments(cause)}") from cause
            raise


def _secrets(settings: Settings) -> list[str]:
    """Values that must never reach a client in a log record."""
    found = [
        s.get_secret_value()
        for s in (settings.http.auth_token, settings.hf_token, settings.request_state_key)
        if s is not None
    ]
    if settings.redis_url is not None:
        password = urlsplit(settings.redis_url.get_secret_value()).password
        if password:
            found.append(password)
    return found


def _cursor(params: PaginatedRequestParams | None) -> str | None:
    return params.cursor if params is not None else None


def create_server(
    settings: Settings, shared: SharedState | None = None, *, defer_registration: bool = False
) -> MCPServer[AppState]:
    """Build the server; nothing connects or loads until the lifespan runs.

    Pass ``shared`` to keep the state open across sessions (the HTTP transports do). With
    ``defer_registration`` the tools, resources and prompts are registered by the lifespan, in a
    worker thread, after the transport is up (their modules import the services: ~1 s); list and
    call requests wait for them. The state always opens in the background: ``initialize`` is
    answered at once (see :mod:`mcp_gemma.server.ready`).
    """
    holder = shared or SharedState(settings)
    plugin_writes: set[str] = set()

    @asynccontextmanager
    async def lifespan(app: MCPServer[AppState]) -> AsyncIterator[AppState]:
        gate = StateGate()
        register = (lambda: register_all(app, settings)) if defer_registration else None
        forwarder.attach(settings.log_level, also=settings.server.plugins)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.run, holder, register)
            try:
                # Handlers never see the gate: readiness_middleware swaps in the opened AppState
                # before any request that reads the lifespan context reaches them.
                yield cast(AppState, gate)
            finally:
                gate.stop()
                forwarder.detach()

    server = GemmaServer(
        SERVER_NAME,
        title="mcp-gemma",
        description="Local knowledge base, agent memory and Gemma model over MCP.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[
            readiness_middleware,
            compact_schemas_middleware,
            metrics_middleware,
            access_control(plugin_writes),
        ],
        request_state_security=shared_security(holder, SERVER_NAME),
    )
    server.list_page_size = settings.list_page_size
    server.plugin_writes = plugin_writes
    install_key_gate(server)
    # Protocol handlers go on at once, deferred or not: initialize declares the capabilities they add.
    completion.register(server)
    forwarder = notify.install(server, secrets=_secrets(settings))
    if not defer_registration:
        register_all(server, settings)
    return server


def register_all(server: MCPServer[AppState], settings: Settings) -> None:
    """Add every tool, resource and prompt to ``server`` (importing the service modules), then the
    server plugins' (:mod:`mcp_gemma.server.plugins`)."""
    from mcp_gemma.server import prompts
    from mcp_gemma.server.plugins import register_plugins
    from mcp_gemma.server.tools import agent, memory, ops, rag, reason

    ops.register(server)
    prompts.register(server)
    memory.register(server)
    rag.register(server)
    reason.register(server)
    agent.register(server, settings)
    writes = register_plugins(server, settings)
    if isinstance(server, GemmaServer):
        server.plugin_writes.update(writes)
    # A GemmaServer builds each tool's strict argument model on its first call (see call_tool).
    strict_arguments(server, build_models=not isinstance(server, GemmaServer))
