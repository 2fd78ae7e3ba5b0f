"""Answer ``initialize`` first, open the state right after, and hold back what needs it until then.

The lifespan yields a :class:`StateGate` at once, so the transport answers ``initialize`` (and
``ping``) without waiting for Redis, the index or the heavy imports. A background task then
registers the tools (when that was deferred) and opens the shared :class:`AppState`.
:func:`readiness_middleware` makes every request that needs those wait for them, and hands the
handlers the opened ``AppState`` as their lifespan context. When opening fails, a tool call gets a
tool error with the reason (for example "cannot connect to Redis at …") and other requests a
JSON-RPC error with it; the failure is also kept on the :class:`SharedState` so ``serve`` can exit
non-zero once the session ends.

A deferred registration starts once the handshake (``initialize`` or ``server/discover``) has been
answered, or at once for any other request; the state opens once the requests that waited for the
registration alone (the ``*/list`` ones) have been answered. Both run in a worker thread, and a
worker thread busy importing holds the GIL for up to the switch interval (5 ms) each time the event
loop wants it back: started earlier, they would hold back the ``initialize`` and ``tools/list``
answers (issue 18).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, CallToolResult, TextContent

from mcp_gemma.errors import McpGemmaError

if TYPE_CHECKING:
    from mcp_gemma.state import AppState, SharedState

logger = logging.getLogger(__name__)

# Answered without waiting: the handshake, liveness and client notifications.
_UNGATED = frozenset({"initialize", "ping", "server/discover", "logging/setLevel", "subscriptions/listen"})
# Answered before the deferred registration starts (the rest of the ungated ones let it start at once).
_HANDSHAKE = frozenset({"initialize", "server/discover"})
# Need the opened state (everything else only waits for the tools to be registered).
_NEEDS_STATE = frozenset({"tools/call", "resources/read", "prompts/get", "completion/complete"})


class StartupFailedError(McpGemmaError):
    """The server could not open its state (or register its tools); the message says why."""


class StateGate:
    """The opened :class:`AppState` once it is there, or the error that stopped it."""

    def __init__(self) -> None:
        self.registered = anyio.Event()
        self.ready = anyio.Event()
        self.state: AppState | None = None
        self.register_error: McpGemmaError | None = None
        self.open_error: McpGemmaError | None = None
        self._stop = anyio.Event()
        self._go = anyio.Event()
        self._listing = 0
        self._listed = anyio.Event()

    async def run(self, holder: SharedState, register: Callable[[], None] | None) -> None:
        """Register the tools (in a worker thread: that imports the services), then hold the state
        open until :meth:`stop`. Never raises: a failure is kept for the requests that wait."""
        try:
            if register is not None:
                await self._go.wait()
                await anyio.to_thread.run_sync(register)
        except McpGemmaError as exc:  # a server plugin's register failed: its message says which
            logger.error("registering the tools failed: %s", exc)
            self.register_error = StartupFailedError(f"the server could not register its tools: {exc}")
        except Exception as exc:
            logger.exception("registering the tools failed")
            self.register_error = StartupFailedError(f"the server could not register its tools: {exc}")
        finally:
            self.registered.set()
        try:
            if self.register_error is not None:
                holder.failure = self.register_error  # serve exits non-zero with it
                return
            if self._listing:
                await self._listed.wait()
            async with holder.hold() as state:
                self.state = state
                self.ready.set()
                await self._stop.wait()
        except McpGemmaError as exc:
            logger.error("start-up failed: %s", exc)
            self.open_error = exc
        except Exception as exc:
            logger.exception("opening the server state failed")
            self.open_error = StartupFailedError(f"the server could not start: {exc}; see the server log")
        finally:
            self.ready.set()

    def stop(self) -> None:
        """Let :meth:`run` close the state (after it has finished opening, if it still is)."""
        self._go.set()
        self._stop.set()

    def answered(self) -> None:
        """A request was answered without waiting: a deferred registration may start now."""
        self._go.set()

    async def wait(self, method: str) -> AppState | None:
        """Wait for what ``method`` needs and return the state if it is open.

        Raises the start-up error when what the method needs could not be made ready.
        """
        self._go.set()
        if method in _NEEDS_STATE:
            await self.ready.wait()
            error = self.register_error or self.open_error
        else:
            await self.registered.wait()
            error = self.register_error
        if error is not None:
            raise error
        return self.state

    @contextlib.contextmanager
    def listing(self) -> Iterator[None]:
        """Mark a request that needs the tools but not the state: the state opens after it."""
        self._listing += 1
        try:
            yield
        finally:
            self._listing -= 1
            if not self._listing:
                self._listed.set()


async def readiness_middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Hold a request until what it needs is ready, and give handlers the opened ``AppState``."""
    gate = ctx.lifespan_context
    if not isinstance(gate, StateGate):
        return await call_next(ctx)
    if ctx.method in _UNGATED or ctx.method.startswith("notifications/"):
        if gate.state is not None:
            ctx = dataclasses.replace(ctx, lifespan_context=gate.state)
        if ctx.method not in _HANDSHAKE:
            gate.answered()  # e.g. subscriptions/listen, which lasts: the registration need not wait
        try:
            return await call_next(ctx)
        finally:
            gate.answered()
    with contextlib.nullcontext() if ctx.method in _NEEDS_STATE else gate.listing():
        try:
            state = await gate.wait(ctx.method)
        except McpGemmaError as exc:
            if ctx.method == "tools/call":
                return CallToolResult(content=[TextContent(text=str(exc))], is_error=True)
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None
        if state is not None:
            ctx = dataclasses.replace(ctx, lifespan_context=state)
        return await call_next(ctx)
