"""Run the server on one transport: stdio, SSE or Streamable HTTP (behind :class:`GuardedApp`: tokens,
rate limits, lockout; TLS when configured; shared state)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gemma.errors import ConfigError, McpGemmaError
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, is_loopback
from mcp_gemma.state import SharedState

if TYPE_CHECKING:
    from starlette.applications import Starlette

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
        allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")],
    )


def build_http_app(settings: Settings, shared: SharedState) -> ASGIApp:
    """The ASGI app of the configured HTTP transport, behind the bearer-token check."""
    # Imported here: the guard pulls in the REST API (FastAPI), which a stdio server never needs
    # and would pay for before its first answer.
    from mcp_gemma.security.jwt import JwtVerifier
    from mcp_gemma.security.principals import TokenRegistry
    from mcp_gemma.server.guard import GuardedApp
    from mcp_gemma.server.wire import HttpIdCheck

    server = create_server(settings, shared)
    http = settings.http
    token = http.auth_token.get_secret_value() if http.auth_token else None
    registry = TokenRegistry.build(token, http.tokens_file)
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
    posted = (http.message_path,) if settings.transport == "sse" else (http.path,)
    inner = HttpIdCheck(inner, posted, http.max_request_bytes)
    dispatch = PathDispatch(inner, create_api(settings, shared), mcp_paths)
    public = frozenset(p for p in (*console_paths(), "/healthz") if not dispatch.is_mcp(p))
    return GuardedApp(
        dispatch,
        registry=registry,
        verifier=JwtVerifier.from_settings(http.oauth),
        limits=http.limits,
        mcp_path=http.path if settings.transport != "sse" else None,
        sse_path=http.sse_path if settings.transport == "sse" else None,
        public_paths=public,
    )


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
            ssl_certfile=str(http.tls_certfile) if http.tls_certfile else None,
            ssl_keyfile=str(http.tls_keyfile) if http.tls_keyfile else None,
            ws_max_size=settings.chat.max_frame_bytes,
        )
        path = http.path if settings.transport == "streamable-http" else http.sse_path
        logger.info(
            "serving MCP over %s on %s://%s:%s%s", settings.transport, http.scheme, http.host, http.port, path
        )
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
    # A plugin that cannot be imported stops start-up here, before any transport answers.
    from mcp_gemma.server.plugins import load_plugins

    load_plugins(settings.server.plugins)
    if settings.transport != "stdio":
        check_port_free(settings.http.host, settings.http.port)
    try:
        anyio.run(_serve, settings)
    except BaseExceptionGroup as group:
        found = _first_domain_error(group)
        if found is None:
            raise
        raise found from None
