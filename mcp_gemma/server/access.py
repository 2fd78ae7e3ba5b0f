"""Who may call what: principals' rights on the MCP side, and the audit of every call that changes data.

The HTTP guard (:mod:`mcp_gemma.server.guard`) puts the caller's
:class:`~mcp_gemma.security.principals.Principal` on the request; :func:`access_middleware` reads it
(stdio and in-process sessions are :data:`~mcp_gemma.security.principals.LOCAL`, with every right)
and, before a handler runs, refuses

- a tool in :data:`MUTATING_TOOLS` (or ``run_agent`` given tools that write, or a server plugin's
  tool not declared read-only: see :mod:`mcp_gemma.server.plugins`) to a read-only principal,
- a memory tool, memory resource or completion whose namespace (``agent_id``) is not the principal's,
- a document tool, ``doc://`` resource, ``summarize_document`` prompt or completion whose collection
  (``collection``, default ``default``) is not one of the principal's namespaces,
- ``store_memory(shared=true)`` to a principal limited to some namespaces (the shared pool is seen by
  every namespace), and the tools that recall namespace ``default`` implicitly (``research_query``
  with ``use_memory``, ``run_agent`` with memory tools) unless ``default`` is one of its namespaces.

After such a tool it writes one audit record (principal, transport, tool, ids,
``ok`` or ``error:<class>``) through :meth:`~mcp_gemma.state.AppState.record_audit`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Set
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, CompleteResult, Completion, TextContent

from mcp_gemma.errors import AccessDeniedError
from mcp_gemma.security.principals import LOCAL, Principal, principal_of_scope
from mcp_gemma.security.rights import (
    DEFAULT_NAMESPACE,
    DOCUMENT_TOOLS,
    NAMESPACED_TOOLS,
    check_tool,
    writes,
)

_failure: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "mcp_gemma_tool_failure", default=None
)


def note_failure(error: BaseException) -> None:
    """Remember the class of the error a tool raised, for its audit record (``GemmaServer`` calls it)."""
    holder = _failure.get()
    if holder is not None:
        holder.append(type(error).__name__)


def principal_of(ctx: ServerRequestContext[Any, Any]) -> Principal:
    """The caller: the principal the HTTP guard attached, or :data:`LOCAL` on stdio and in-process."""
    scope = getattr(ctx.request, "scope", None)
    found = principal_of_scope(scope) if isinstance(scope, Mapping) else None
    return found or LOCAL


def transport_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """``stdio`` without an HTTP request, else the configured HTTP transport."""
    if ctx.request is None:
        return "stdio"
    settings = getattr(ctx.lifespan_context, "settings", None)
    return str(getattr(settings, "transport", "http"))


def audit_ids(name: str, args: Mapping[str, Any], result: HandlerResult) -> list[str]:
    """What a mutating call touched, as ``kind:value`` ids (never text)."""
    ids: list[str] = []
    if isinstance(args.get("id"), str):
        ids.append(f"doc:{args['id']}")
    if name in NAMESPACED_TOOLS:
        ids.append(f"agent:{args.get('agent_id', DEFAULT_NAMESPACE)}")
    if name in DOCUMENT_TOOLS and args.get("collection", DEFAULT_NAMESPACE) != DEFAULT_NAMESPACE:
        ids.append(f"collection:{args['collection']}")
    if isinstance(args.get("tier"), str):
        ids.append(f"tier:{args['tier']}")
    if name in ("agent_write_file", "sync_folder") and isinstance(args.get("path"), str):
        ids.append(f"path:{args['path']}")
    content = _field(result, "structured_content", "structuredContent")
    if isinstance(content, Mapping) and not _is_error(result):
        if name == "ingest_document" and isinstance(content.get("id"), str):
            ids.append(f"doc:{content['id']}")
        for item in content.get("ingested") or ():
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                ids.append(f"doc:{item['id']}")
        ids.extend(f"memory:{i}" for i in content.get("ids") or () if isinstance(i, str))
    return list(dict.fromkeys(ids))


def _field(result: HandlerResult, attr: str, key: str) -> Any:
    """A field of a handler result, whether it is still a model or already a dict."""
    if isinstance(result, Mapping):
        return result.get(key, result.get(attr))
    return getattr(result, attr, None)


def _is_error(result: HandlerResult) -> bool:
    return bool(_field(result, "is_error", "isError"))


def _refusal(exc: AccessDeniedError) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=str(exc))], is_error=True)


def access_control(plugin_writes: Set[str]) -> ServerMiddleware[Any]:
    """:func:`access_middleware` that also counts the tools in ``plugin_writes`` (a set the plugin
    registration fills in later) as changing data."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        return await access_middleware(ctx, call_next, plugin_writes)

    return middleware


async def access_middleware(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, plugin_writes: Set[str] = frozenset()
) -> HandlerResult:
    """Refuse what the caller's principal may not do; audit the tools that change data."""
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    principal = principal_of(ctx)
    if ctx.method == "tools/call":
        name = str(params.get("name", "?"))
        raw_args = params.get("arguments")
        args: Mapping[str, Any] = raw_args if isinstance(raw_args, Mapping) else {}
        try:
            check_tool(principal, name, args, plugin_writes)
        except AccessDeniedError as exc:
            _audit(ctx, principal, name, args, None, "error:AccessDeniedError")
            return _refusal(exc)
        if not writes(name, args, plugin_writes):
            return await call_next(ctx)
        holder: list[str] = []
        token = _failure.set(holder)
        outcome = "error:Exception"
        try:
            result = await call_next(ctx)
            outcome = f"error:{holder[0] if holder else 'ToolError'}" if _is_error(result) else "ok"
            _audit(ctx, principal, name, args, result, outcome)
            return result
        except BaseException as exc:
            _audit(ctx, principal, name, args, None, f"error:{type(exc).__name__}")
            raise
        finally:
            _failure.reset(token)
    if principal.limited and ctx.method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        _require_uris(principal, [str(params.get("uri", ""))], ctx.method)
    if principal.limited and ctx.method == "subscriptions/listen":
        # The 2026 protocol's resource subscriptions ride the listen request: the same rule as
        # resources/subscribe for every URI it names (an update tells which document changed).
        wanted = params.get("notifications")
        uris = (
            wanted.get("resourceSubscriptions", wanted.get("resource_subscriptions"))
            if isinstance(wanted, Mapping)
            else None
        )
        if isinstance(uris, list):
            _require_uris(principal, [str(u) for u in uris], ctx.method)
    if principal.limited and ctx.method == "prompts/get" and params.get("name") == "summarize_document":
        arguments = params.get("arguments")
        chosen = arguments.get("collection") if isinstance(arguments, Mapping) else None
        try:
            principal.require_collection(str(chosen or DEFAULT_NAMESPACE), "summarize_document")
        except AccessDeniedError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None
    if principal.limited and ctx.method == "completion/complete":
        return await _complete_limited(principal, params, ctx, call_next)
    return await call_next(ctx)


def _require_uris(principal: Principal, uris: list[str], method: str) -> None:
    """Refuse (``INVALID_PARAMS``) a URI whose memory namespace or document collection the principal
    may not use."""
    try:
        for uri in uris:
            for namespace in memory_namespaces(uri):
                principal.require_namespace(namespace, method)
            for collection in document_collections(uri):
                principal.require_collection(collection, method)
    except AccessDeniedError as exc:
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None


def memory_namespaces(uri: str) -> list[str]:
    """The namespaces a ``memory://`` URI may read: every ``agent_id`` it names (a repeated one too,
    whichever the template takes), or ``default``; none for other URIs."""
    if not uri.lower().startswith("memory:"):
        return []
    values = parse_qs(urlsplit(uri).query, keep_blank_values=True).get("agent_id")
    return values or [DEFAULT_NAMESPACE]


def document_collections(uri: str) -> list[str]:
    """The collections a ``doc://`` URI may read: every ``collection`` it names, or ``default``;
    none for other URIs."""
    if not uri.lower().startswith("doc:"):
        return []
    values = parse_qs(urlsplit(uri).query, keep_blank_values=True).get("collection")
    return values or [DEFAULT_NAMESPACE]


async def _complete_limited(
    principal: Principal, params: Mapping[str, Any], ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Offer a limited principal only its own namespaces and collections, and nothing from another
    one's: a completion in a namespace or collection it may not use is answered empty without being
    run (so it neither reads another one's ids nor opens a collection)."""
    ref = params.get("ref")
    uri = str(ref.get("uri", "")) if isinstance(ref, Mapping) else ""
    if uri.startswith("memory://"):
        scoped_by = "agent_id"
    elif uri.startswith("doc://") or (isinstance(ref, Mapping) and ref.get("name") == "summarize_document"):
        scoped_by = "collection"
    else:
        return await call_next(ctx)
    argument = params.get("argument")
    context = params.get("context")
    arg_name = argument.get("name") if isinstance(argument, Mapping) else None
    known = context.get("arguments") if isinstance(context, Mapping) else None
    chosen = known.get(scoped_by) if isinstance(known, Mapping) else None
    allowed = principal.allows(str(chosen or DEFAULT_NAMESPACE))
    if arg_name != scoped_by and not allowed:
        return CompleteResult(completion=Completion(values=[], total=0, has_more=False))
    result = await call_next(ctx)
    if arg_name != scoped_by:
        return result
    completion = _field(result, "completion", "completion")
    values = _field(completion, "values", "values") if completion is not None else None
    if not isinstance(values, list):
        return result
    kept = [v for v in values if isinstance(v, str) and principal.allows(v)]
    filtered = Completion(values=kept, total=len(kept), has_more=False)
    if isinstance(result, Mapping):
        return {**result, "completion": filtered.model_dump(by_alias=True, exclude_none=True)}
    return CompleteResult(completion=filtered)


def _audit(
    ctx: ServerRequestContext[Any, Any],
    principal: Principal,
    name: str,
    args: Mapping[str, Any],
    result: HandlerResult,
    outcome: str,
) -> None:
    record = getattr(ctx.lifespan_context, "record_audit", None)
    if callable(record):
        record(principal.name, name, audit_ids(name, args, result), outcome, transport=transport_of(ctx))
