"""The REST API's request guards: Host and Origin checks (DNS-rebinding protection, like the MCP
endpoint's), the body size limit, and CORS by allow-list only.

They are plain ASGI middlewares installed by :func:`install_guards`; a rate limiter goes in there
too (one more ``app.add_middleware`` line, after the Host / Origin guard so that refused requests
cost nothing), so every guard sits in one place.
Bearer auth is not here: it wraps the MCP endpoint and the REST API together (``server/run.py``).
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gemma.api.problems import PROBLEM_JSON
from mcp_gemma.settings import HttpSettings


def problem_bytes(status: int, title: str, detail: str, slug: str) -> bytes:
    """The body of a problem+json response sent from a middleware."""
    body = {"type": f"urn:mcp-gemma:problem:{slug}", "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()


async def send_problem(send: Send, status: int, title: str, detail: str, slug: str) -> None:
    """Answer an HTTP request with a problem (before the app has started a response)."""
    body = problem_bytes(status, title, detail, slug)
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _matches(value: str, patterns: list[str]) -> bool:
    """``value`` equals a pattern, or a ``base:*`` pattern's base with or without a port."""
    for pattern in patterns:
        if value == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit()):
                return True
    return False


class HostOriginGuard:
    """Refuse a foreign ``Host`` (421) or a foreign ``Origin`` (403), on HTTP and WebSocket alike.

    A page on another site cannot reach the API through the browser (DNS rebinding, cross-site
    requests); ``http.cors_origins`` are the origins let through on purpose.
    """

    def __init__(self, app: ASGIApp, http: HttpSettings) -> None:
        self.app = app
        self.hosts = http.trusted_hosts()
        self.origins = [f"{scheme}://{h}" for h in self.hosts for scheme in ("http", "https")]
        self.cors = list(http.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origin = headers.get("origin")
        refusal: tuple[int, str, str, str] | None = None
        if not _matches(host, self.hosts):
            refusal = (
                421,
                "Misdirected request",
                f"Host {host!r} is not served here; add it to http.allowed_hosts "
                "(MCP_GEMMA_HTTP__ALLOWED_HOSTS) if this server should answer to that name",
                "host-not-allowed",
            )
        elif origin is not None and origin not in self.cors and not _matches(origin, self.origins):
            refusal = (
                403,
                "Origin not allowed",
                f"requests from the web origin {origin!r} are refused; add it to http.cors_origins "
                "(MCP_GEMMA_HTTP__CORS_ORIGINS) to let that site call the API",
                "origin-not-allowed",
            )
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await send_problem(send, *refusal)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[2][:120]})


class DeclaredBodyLimit:
    """Refuse a request whose ``Content-Length`` passes ``http.max_request_bytes`` with a 413 problem
    before reading it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                detail = (
                    f"the request body ({int(declared):,} bytes) is larger than http.max_request_bytes="
                    f"{self.max_bytes:,}; send less (split a batch, upload a smaller file) or raise the limit"
                )
                await send_problem(send, 413, "Content Too Large", detail, "too-large")
                return
        await self.app(scope, receive, send)


def install_guards(app: FastAPI, http: HttpSettings) -> None:
    """Add the guards. ``add_middleware`` wraps what is there, so the last added runs first: Host /
    Origin, then CORS (preflights are answered there), then the body size limit: by
    ``Content-Length`` first, then Starlette's counting limit for a body sent without one (it raises
    a 413 ``HTTPException`` that becomes a problem). FastAPI's own ``max_body_size`` is not used: it
    answers a declared oversize body in plain text.
    """
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=http.max_request_bytes)
    app.add_middleware(DeclaredBodyLimit, max_bytes=http.max_request_bytes)
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(http.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "accept", "last-event-id"],
            max_age=600,
        )
    app.add_middleware(HostOriginGuard, http=http)
