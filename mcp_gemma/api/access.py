"""The caller of a REST route, its rights, and the audit record of a route that changes data.

The HTTP guard (:mod:`mcp_gemma.server.guard`) authenticates every request and leaves the
:class:`~mcp_gemma.security.principals.Principal` on ``request.state``. A write route takes
``caller: Caller``, calls ``caller.require_write("…")`` (and ``caller.require_namespace(agent_id, "…")``
for memory routes) before the service, and records the outcome with :func:`audited`::

    @app.delete("/v1/documents/{doc_id}")
    async def delete(doc_id: str, state: State, caller: Caller) -> DeleteReport:
        caller.require_write("delete_document")
        async with audited(state, caller, "delete_document", [f"doc:{doc_id}"]):
            return await state.rag.delete_document(doc_id)

A refused call is a 403 problem (``AccessDeniedError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from mcp_gemma.errors import AccessDeniedError
from mcp_gemma.security.audit import outcome
from mcp_gemma.security.principals import LOCAL, Principal, principal_of_scope
from mcp_gemma.security.rights import check_tool, writes
from mcp_gemma.state import AppState


def current_principal(request: Request) -> Principal:
    """The principal the guard attached; :data:`LOCAL` when the app runs without the guard (tests)."""
    return principal_of_scope(request.scope) or LOCAL


Caller = Annotated[Principal, Depends(current_principal)]


@asynccontextmanager
async def checked(
    state: AppState, caller: Principal, tool: str, args: dict[str, Any], ids: list[str]
) -> AsyncIterator[None]:
    """The route for MCP tool ``tool`` called with ``args``: refused (403, and audited, as the MCP side
    does) when the caller may not make that call, and audited when it changes data."""
    try:
        check_tool(caller, tool, args)
    except AccessDeniedError as exc:
        state.record_audit(caller.name, tool, ids, outcome(exc), transport="rest")
        raise
    if not writes(tool, args):
        yield
        return
    async with audited(state, caller, tool, ids):
        yield


@asynccontextmanager
async def audited(state: AppState, caller: Principal, action: str, ids: list[str]) -> AsyncIterator[None]:
    """Record ``action`` on ``ids`` by ``caller`` in the audit log: ``ok``, or the error's class."""
    try:
        yield
    except BaseException as exc:
        state.record_audit(caller.name, action, ids, outcome(exc), transport="rest")
        raise
    state.record_audit(caller.name, action, ids, "ok", transport="rest")
