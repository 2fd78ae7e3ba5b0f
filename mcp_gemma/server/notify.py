"""What the server tells clients unasked: updates of the resources they watch, and its own log records.

Two protocol eras. A handshake-era client (before 2026-07-28) sends ``resources/subscribe`` and
``logging/setLevel``; :class:`ResourceWatch` and :class:`LogForwarder` keep what each connection
asked for and notify it on its connection channel. A 2026-07-28 client listens with
``subscriptions/listen`` (resource updates go on the SDK's subscription bus) and opts in to log
records per request in ``_meta``: the records logged while its request is served ride that request's
stream. Log records are those of the ``mcp_gemma`` loggers and of the server plugins' modules, with
credentials masked.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession
from mcp_types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

ROOT_LOGGER = "mcp_gemma"
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}

_MASKS = [
    (re.compile(r"\b([a-zA-Z][\w+.-]*://)[^\s/@]+@"), r"\1***@"),  # user:password@ in any URL
    (re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]+"), r"\1 ***"),
    (re.compile(r"(?i)\b(token|password|passwd|secret|api[_-]?key)(\s*[=:]\s*)[^\s,;&]+"), r"\1\2***"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_***"),
]


def mcp_level(levelno: int) -> LoggingLevel:
    """The MCP level of a Python log level."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials, bearer tokens, ``password=…``-style values, HF tokens and the
    given literal secrets replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def _connection(session: ServerSession) -> Connection:
    # ServerSession is built per request; the Connection behind it is the client's identity.
    connection: Connection = session._connection
    return connection


@dataclasses.dataclass(frozen=True)
class _RequestSink:
    forwarder: LogForwarder
    session: ServerSession
    request_id: Any
    allowed: frozenset[str]
    loop: asyncio.AbstractEventLoop


_request_sink: contextvars.ContextVar[_RequestSink | None] = contextvars.ContextVar(
    "mcp_gemma_request_log_sink", default=None
)


class LogForwarder(logging.Handler):
    """A logging handler that sends ``mcp_gemma`` records to the clients that asked for them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self._levels: weakref.WeakKeyDictionary[Connection, tuple[int, asyncio.AbstractEventLoop]] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._previous_levels: dict[str, int] = {}

    def attach(self, level: str, also: Iterable[str] = ()) -> None:
        """Start receiving the ``mcp_gemma`` records (and those of the loggers ``also`` names: the
        server plugins' modules) at ``level`` (the server's ``log_level``) and above.

        Each logger gets that level when it would otherwise inherit a stricter one (an embedding
        application's root logger), so a client sees what the server's own log shows.
        """
        names = [ROOT_LOGGER, *(n for n in also if n != ROOT_LOGGER and not n.startswith(ROOT_LOGGER + "."))]
        for name in dict.fromkeys(names):
            target = logging.getLogger(name)
            if self in target.handlers:
                continue
            self._previous_levels[name] = target.level
            if target.getEffectiveLevel() > logging.getLevelName(level):
                target.setLevel(level)
            target.addHandler(self)

    def detach(self) -> None:
        """Stop receiving records (and give the loggers back their levels)."""
        for name, previous in self._previous_levels.items():
            target = logging.getLogger(name)
            if self in target.handlers:
                target.removeHandler(self)
                target.setLevel(previous)
        self._previous_levels.clear()

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        """``logging/setLevel``: records at ``params.level`` and above go to this connection."""
        self._levels[_connection(ctx.session)] = (LEVELS[params.level], asyncio.get_running_loop())
        logger.info("client log level set to %s", params.level)
        return EmptyResult()

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Route the records logged while serving a 2026-07-28 request that opted in to its stream."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS or ctx.request_id is None:
            return await call_next(ctx)
        allowed = allowed_log_levels(ctx.protocol_version, ctx.meta)
        if not allowed:
            return await call_next(ctx)
        sink = _RequestSink(self, ctx.session, ctx.request_id, frozenset(allowed), asyncio.get_running_loop())
        token = _request_sink.set(sink)
        try:
            return await call_next(ctx)
        finally:
            _request_sink.reset(token)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            params = LoggingMessageNotificationParams(
                level=mcp_level(record.levelno),
                logger=record.name,
                data=mask_secrets(record.getMessage(), self.secrets),
            )
        except Exception:
            self.handleError(record)
            return
        sink = _request_sink.get()
        if sink is not None and sink.forwarder is self and params.level in sink.allowed:
            note = LoggingMessageNotification(params=params)
            self._schedule(sink.loop, lambda: sink.session.send_notification(note, sink.request_id), None)
        body = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        for connection, (threshold, loop) in list(self._levels.items()):
            if record.levelno >= threshold:
                self._schedule(
                    loop, functools.partial(connection.notify, "notifications/message", body), connection
                )

    def _schedule(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[], Awaitable[None]],
        connection: Connection | None,
    ) -> None:
        # emit() runs in whatever thread logged (the event loop's or a worker's): hop onto the loop.
        try:
            loop.call_soon_threadsafe(self._start, send, connection)
        except RuntimeError:  # the loop is closed: that client is gone
            if connection is not None:
                self._levels.pop(connection, None)

    def _start(self, send: Callable[[], Awaitable[None]], connection: Connection | None) -> None:
        task = asyncio.get_running_loop().create_task(self._send(send, connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, send: Callable[[], Awaitable[None]], connection: Connection | None) -> None:
        try:
            await send()
        except Exception:  # best effort, like every notification: a closed stream drops the client
            if connection is not None:
                self._levels.pop(connection, None)


# ---- resources -------------------------------------------------------------------------------


def doc_uri(doc_id: str, collection: str = "default") -> str:
    """The ``doc://`` URI of a document id in a collection (``?collection=`` unless the default one)."""
    uri = "doc://" + quote(doc_id, safe="")
    return uri if collection == "default" else f"{uri}?collection={quote(collection, safe='')}"


def memory_uri(tier: str, agent_id: str, memory_id: str | None = None) -> str:
    """The ``memory://`` URI of a tier (or one memory in it) of an agent."""
    path = tier if memory_id is None else f"{tier}/{quote(memory_id, safe='')}"
    return f"memory://{path}" + ("" if agent_id == "default" else f"?agent_id={quote(agent_id, safe='')}")


def memory_scope_of(uri: str) -> tuple[str, str] | None:
    """(tier, agent id) of a ``memory://`` URI, or ``None`` for another scheme."""
    parts = urlsplit(uri)
    if parts.scheme != "memory":
        return None
    agent = parse_qs(parts.query).get("agent_id", ["default"])[0]
    return parts.netloc, agent


class ResourceWatch:
    """Which connections subscribed to which URIs (``resources/subscribe``), and the updates they get."""

    def __init__(self) -> None:
        self._uris: weakref.WeakKeyDictionary[Connection, set[str]] = weakref.WeakKeyDictionary()

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        """``resources/subscribe``."""
        self._uris.setdefault(_connection(ctx.session), set()).add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        """``resources/unsubscribe``."""
        self._uris.get(_connection(ctx.session), set()).discard(str(params.uri))
        return EmptyResult()

    async def updated(
        self, ctx: Context[Any], uris: Iterable[str], also: Callable[[str], bool] | None = None
    ) -> None:
        """Tell the subscribers of ``uris`` (and of any URI ``also`` accepts) that they changed."""
        changed = set(uris)
        for uri in sorted(changed):
            await ctx.notify_resource_updated(uri)  # 2026-07-28 listeners, through the bus
        for connection, subscribed in list(self._uris.items()):
            for uri in sorted(subscribed):
                if uri in changed or (also is not None and also(uri)):
                    try:
                        await connection.send_resource_updated(uri)
                    except Exception:
                        self._uris.pop(connection, None)
                        break


_WATCH_ATTR = "_mcp_gemma_resource_watch"


def install(server: MCPServer[Any], secrets: Iterable[str] = ()) -> LogForwarder:
    """Serve ``logging/setLevel`` and ``resources/(un)subscribe`` on ``server``; returns the forwarder
    for the lifespan to attach (and its middleware, already added to the server)."""
    watch = ResourceWatch()
    forwarder = LogForwarder(secrets)
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, forwarder.set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, watch.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, watch.unsubscribe)
    lowlevel.middleware.append(forwarder.middleware)
    setattr(server, _WATCH_ATTR, watch)
    return forwarder


async def resources_updated(
    ctx: Context[Any], uris: Iterable[str], also: Callable[[str], bool] | None = None
) -> None:
    """From a tool: tell the watchers of ``uris`` that those resources changed."""
    watch = getattr(ctx.mcp_server, _WATCH_ATTR, None)
    if isinstance(watch, ResourceWatch):
        await watch.updated(ctx, uris, also)
