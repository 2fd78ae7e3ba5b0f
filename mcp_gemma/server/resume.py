"""Sealing the ``requestState`` of paused tool calls with a key every replica shares.

The key is made in Redis by the first tool call that pauses (``run_agent`` calls
:meth:`AppState.load_request_state_key` with ``create`` before it returns a sealed state), so a
server that never pauses a call writes nothing; a replica reads it when a sealed state first comes.

The SDK's default key is made per process, so a ``run_agent`` paused on one replica (waiting for the
client's model) could not resume on another. :class:`SharedKeyCodec` seals with the AppState's
``request_state_key`` instead (the setting of that name, or a secret kept in Redis), so any replica
over the same Redis and namespace resumes it; expiry, request binding and audience stay the SDK's.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import (
    AESGCMRequestStateCodec,
    InvalidRequestState,
    RequestStateBoundary,
    RequestStateSecurity,
)

from mcp_gemma.server.ready import StateGate
from mcp_gemma.state import AppState, SharedState


class SharedKeyCodec:
    """AES-256-GCM (the SDK's codec) under the open state's shared key."""

    def __init__(self, holder: SharedState) -> None:
        self._holder = holder
        self._key = ""
        self._codec: AESGCMRequestStateCodec | None = None

    def _current(self) -> AESGCMRequestStateCodec:
        state = self._holder.current
        if state is None or not state.request_state_key:
            raise InvalidRequestState("state-not-open")
        if self._codec is None or state.request_state_key != self._key:
            self._codec = AESGCMRequestStateCodec([state.request_state_key])
            self._key = state.request_state_key
        return self._codec

    def seal(self, payload: bytes) -> str:
        """An opaque token of ``payload`` under the shared key."""
        return self._current().seal(payload)

    def unseal(self, token: str) -> bytes:
        """``payload`` back from a token any replica sealed."""
        return self._current().unseal(token)


def shared_security(holder: SharedState, audience: str) -> RequestStateSecurity:
    """The request-state policy of a server: the SDK's, with the shared key."""
    return RequestStateSecurity(codec=SharedKeyCodec(holder), audience=audience)


async def _await_key(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Hold a call that resumes from a sealed state until the state (and its key) is open: the
    key comes from Redis, and the state opens in the background after ``initialize``."""
    gate = ctx.lifespan_context
    if isinstance(gate, StateGate) and ctx.params is not None and ctx.params.get("requestState") is not None:
        await gate.ready.wait()
        if gate.state is not None:
            await gate.state.load_request_state_key(create=False)
    return await call_next(ctx)


def install_key_gate(server: MCPServer[AppState]) -> None:
    """Put :func:`_await_key` just outside the SDK's request-state boundary."""
    chain = server.middleware
    at = next(i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary))
    chain.insert(at, _await_key)
