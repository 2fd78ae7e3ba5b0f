"""Run the server on one transport: stdio, SSE or Streamable HTTP (bearer auth, shared state)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gemma.errors import ConfigError, McpGemmaError
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, is_loopback
from mcp_gemma.state import SharedState

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send every log record to stderr: on stdio, stdout carries protocol only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


UNAUTHORISED = (
    b'{"type":"urn:mcp-gemma:problem:unauthorized","title":"Unauthorized","status":401,'
    b'"detail":"missing or wrong bearer token: send Authorization: Bearer <the server\'s '
    b'MCP_GEMMA_AUTH_TOKEN>"}'
)


class GuardedApp:
    """ASGI wrapper that requires ``Authorization: Bearer <token>`` on every HTTP request and
    WebSocket handshake (a refused handshake gets an HTTP 401 where the server supports it, else the
    close before accept that servers answer with 403), but a ``GET``/``HEAD`` of one of
    ``public_paths`` (the web console's static files, which hold no data)."""

    def __init__(self, app: ASGIApp, token: str | None, public_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.public_paths = public_paths

    def _public(self, scope: Scope) -> bool:
        return scope.get("method") in ("GET", "HEAD") and scope.get("path") in self.public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and self.token is not None
            and not self._public(scope)
            and not self._authorised(scope)
            and not _is_preflight(scope)
        ):
            if scope["type"] == "websocket":
                await _refuse_websocket(scope, receive, send)
                return
            await _send_json(send, 401, UNAUTHORISED, [CHALLENGE])
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        if self.token is None:
            return False
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self.token)
        if scope["type"] == "websocket":
            # A browser cannot put headers on a WebSocket: it offers the token as a subprotocol
            # ``bearer.<base64url>`` instead (never in the URL, which access logs keep).
            for offered in scope.get("subprotocols", ()):
                offered = offered.strip()
                if offered.startswith(WS_BEARER_PREFIX):
                    return hmac.compare_digest(_unbase64url(offered[len(WS_BEARER_PREFIX) :]), self.token)
        return False


WS_BEARER_PREFIX = "bearer."


def _unbase64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return b""


CHALLENGE = (b"www-authenticate", b'Bearer realm="mcp-gemma"')


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()  # websocket.connect
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(UNAUTHORISED)).encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [*headers, CHALLENGE]})
        await send({"type": "websocket.http.response.body", "body": UNAUTHORISED})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong bearer token"})


def _is_preflight(scope: Scope) -> bool:
    """A browser's CORS preflight: it never carries credentials, and it is answered with CORS headers
    only (by the REST API's allow-list), never with data."""
    return scope.get("method") == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope.get("headers", [])
    )


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message when ``host:port`` cannot be bound."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}. "
                "Pick another port with --port (or MCP_GEMMA_HTTP__PORT), or stop what uses it"
            ) from exc


def _security(settings: Settings) -> TransportSecuritySettings | None:
    http = settings.http
    if is_loopback(http.host) and not http.allowed_hosts:
        return None  # the SDK enables DNS-rebinding protection for loopback itself
    hosts = http.trusted_hosts()
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts],
    )


def build_http_app(settings: Settings, shared: SharedState) -> ASGIApp:
    """The ASGI app of the configured HTTP transport, behind the bearer-token check."""
    server = create_server(settings, shared)
    http = settings.http
    token = http.auth_token.get_secret_value() if http.auth_token else None
    inner: ASGIApp
    if settings.transport == "sse":
        inner = server.sse_app(
            sse_path=http.sse_path,
            message_path=http.message_path,
            max_request_body_size=http.max_request_bytes,
            transport_security=_security(settings),
            host=http.host,
        )
    else:
        inner = server.streamable_http_app(
            streamable_http_path=http.path,
            max_request_body_size=http.max_request_bytes,
            transport_security=_security(settings),
            host=http.host,
        )
    from mcp_gemma.api.app import create_api
    from mcp_gemma.api.console import console_paths

    mcp_paths = (http.sse_path, http.message_path) if settings.transport == "sse" else (http.path,)
    dispatch = PathDispatch(inner, create_api(settings, shared), mcp_paths)
    public = frozenset(p for p in console_paths() if not dispatch.is_mcp(p))
    return GuardedApp(dispatch, token, public)


class PathDispatch:
    """One port: the MCP endpoint's paths go to the MCP app, everything else to the REST API.

    The lifespan goes to the MCP app (its session manager runs there), inside the REST API's own
    lifespan (its background agent runs); both reach the state that ``serve`` holds open.
    """

    def __init__(self, mcp_app: ASGIApp, api_app: Starlette, mcp_paths: tuple[str, ...]) -> None:
        self.mcp_app = mcp_app
        self.api_app = api_app
        self.mcp_paths = tuple(p.rstrip("/") for p in mcp_paths)

    def is_mcp(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.mcp_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with self.api_app.router.lifespan_context(self.api_app):
                await self.mcp_app(scope, receive, send)
        elif self.is_mcp(scope.get("path", "")):
            await self.mcp_app(scope, receive, send)
        else:
            await self.api_app(scope, receive, send)


def _first_domain_error(exc: BaseException) -> McpGemmaError | None:
    if isinstance(exc, McpGemmaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_domain_error(inner)
            if found is not None:
                return found
    return None


async def _serve(settings: Settings) -> None:
    shared = SharedState(settings)
    if settings.transport == "stdio":
        # Answer ``initialize`` first: the tools register and the state (Redis, the index) opens in
        # the background, and requests that need them wait (a failure becomes their error). When
        # the state could not open, the exit status still says so once the session ends.
        from mcp_gemma.server.stdio import run_stdio

        await run_stdio(create_server(settings, shared, defer_registration=True))
        if shared.failure is not None:
            raise shared.failure
        return
    # On HTTP the state opens before the port is served, so a bad Redis stops start-up with its
    # own message; every session then shares it.
    async with shared.hold():
        import uvicorn

        http = settings.http
        config = uvicorn.Config(
            build_http_app(settings, shared),
            host=http.host,
            port=http.port,
            log_level=settings.log_level.lower(),
            lifespan="on",
            log_config=None,
            timeout_graceful_shutdown=5,
            ws_max_size=settings.chat.max_frame_bytes,
        )
        path = http.path if settings.transport == "streamable-http" else http.sse_path
        logger.info("serving MCP over %s on http://%s:%s%s", settings.transport, http.host, http.port, path)
        userver = _quiet_signals_server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, userver)
            await userver.serve()
            tg.cancel_scope.cancel()


async def _stop_on_signal(userver: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            userver.should_exit = True
            return


def _quiet_signals_server(config: Any) -> Any:
    import uvicorn

    class QuietSignalsServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its shutdown, which would skip our cleanup (closing Redis,
        stopping the embedded server); here the serve loop owns the signals instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietSignalsServer(config)


def serve(settings: Settings) -> None:
    """Run until stopped (Ctrl-C, SIGTERM, or end of stdin on stdio)."""
    configure_logging(settings.log_level)
    if settings.transport != "stdio":
        check_port_free(settings.http.host, settings.http.port)
    try:
        anyio.run(_serve, settings)
    except BaseExceptionGroup as group:
        found = _first_domain_error(group)
        if found is None:
            raise
        raise found from None
