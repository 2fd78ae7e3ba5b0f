"""``completion/complete``: suggestions for the prompt and resource-template arguments that have a domain.

Tier names, agent ids (memory scopes), memory ids of a tier, document ids by prefix (in the context's
``collection``), the open collections, tool names (the
``react_task`` prompt's ``tool``) and the ``stats://`` sections. Free-text arguments (a question, a
task) get no suggestions; a prompt or template this server does not have is an invalid-params error.
A server plugin adds the arguments of its own prompts and templates with :func:`add_completions`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    PromptReference,
)

from mcp_gemma.errors import McpGemmaError
from mcp_gemma.memory.config import TIER_NAMES
from mcp_gemma.state import AppState

MAX_VALUES = 100  # the spec's cap on one completion response

Context = Mapping[str, str]
Source = Callable[[AppState, str, Context], Awaitable[list[str]]]
"""What an argument completes from: ``(state, prefix, other arguments) -> candidates`` (the handler
keeps those that start with the prefix)."""
RefType = Literal["ref/prompt", "ref/resource"]
Table = dict[tuple[str, str], dict[str, Source]]

_TABLE_ATTR = "_mcp_gemma_completions"


async def _tiers(state: AppState, prefix: str, context: Context) -> list[str]:
    return list(TIER_NAMES)


async def _agents(state: AppState, prefix: str, context: Context) -> list[str]:
    return sorted({"default", *await state.memory.agent_ids()})


async def _memory_ids(state: AppState, prefix: str, context: Context) -> list[str]:
    tier = context.get("tier")
    if tier not in TIER_NAMES:
        return []  # the id depends on the tier: complete that first
    items = await state.memory.list_tier(tier, agent_id=context.get("agent_id") or "default", limit=1000)
    return [item.id for item in items]


async def _documents(state: AppState, prefix: str, context: Context) -> list[str]:
    try:
        rag = state.collection(context.get("collection") or "default")
    except McpGemmaError:
        return []  # not a collection name, or no room to open one: nothing to suggest
    return await rag.document_ids(prefix)


async def _collections(state: AppState, prefix: str, context: Context) -> list[str]:
    return state.collections.names


async def _sections(state: AppState, prefix: str, context: Context) -> list[str]:
    return ["system"]


def _tool_names(server: MCPServer[AppState]) -> Source:
    async def names(state: AppState, prefix: str, context: Context) -> list[str]:
        return sorted(tool.name for tool in await server.list_tools())

    return names


def sources(server: MCPServer[AppState]) -> Table:
    """What each argument completes from, by (``ref/prompt`` | ``ref/resource``, name or template)."""
    memory_args: dict[str, Source] = {"tier": _tiers, "agent_id": _agents}
    return {
        ("ref/prompt", "rag_answer"): {},
        ("ref/prompt", "summarize_document"): {"document_id": _documents, "collection": _collections},
        ("ref/prompt", "react_task"): {"tool": _tool_names(server)},
        ("ref/resource", "doc://{id}{?collection}"): {"id": _documents, "collection": _collections},
        ("ref/resource", "memory://{tier}{?agent_id}"): memory_args,
        ("ref/resource", "memory://{tier}/{id}{?agent_id}"): {**memory_args, "id": _memory_ids},
        ("ref/resource", "stats://{section}"): {"section": _sections},
    }


def register(server: MCPServer[AppState]) -> None:
    """Serve ``completion/complete`` on ``server`` (which declares the completions capability with it)."""
    table = sources(server)
    setattr(server, _TABLE_ATTR, table)

    async def complete(
        ctx: ServerRequestContext[AppState, Any], params: CompleteRequestParams
    ) -> CompleteResult:
        ref = params.ref
        key = (ref.type, ref.name if isinstance(ref, PromptReference) else ref.uri)
        arguments = table.get(key)
        if arguments is None:
            what = "prompt" if isinstance(ref, PromptReference) else "resource template"
            raise MCPError(code=INVALID_PARAMS, message=f"no {what} {key[1]!r} on this server")
        source = arguments.get(params.argument.name)
        if source is None:
            return CompleteResult(completion=Completion(values=[], total=0, has_more=False))
        prefix = params.argument.value
        context = (params.context.arguments if params.context else None) or {}
        found = [v for v in await source(ctx.lifespan_context, prefix, context) if v.startswith(prefix)]
        return CompleteResult(
            completion=Completion(
                values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES
            )
        )

    # MCPServer.completion() hands its handler no request context, and these suggestions need the
    # state (document ids, agent ids), so the handler goes on the low-level server directly.
    server._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, complete)


def add_completions(
    server: MCPServer[AppState], ref: RefType, name: str, arguments: Mapping[str, Source]
) -> None:
    """Complete the ``arguments`` of the prompt (``ref/prompt``) or resource template (``ref/resource``,
    its URI template) ``name``, a server plugin's own; those of this server's stay as they are."""
    table: Table | None = getattr(server, _TABLE_ATTR, None)
    if table is None:
        raise McpGemmaError("completions are not served on this server: create it with create_server")
    if (ref, name) in table:
        raise McpGemmaError(f"the {ref} {name!r} already has completions; a plugin may only add its own")
    table[(ref, name)] = dict(arguments)
