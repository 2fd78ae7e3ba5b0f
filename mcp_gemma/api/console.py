"""The web console: static files (HTML, ES modules, CSS) served at ``/`` under a strict CSP.

The console is plain files in ``api/static/``, shipped in the wheel; no build step. It talks to the
REST API and the chat WebSocket of the same origin with the bearer token the person types in.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Self only, no inline script or style, no framing: an injected tag can neither run nor load anything.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Revalidate on every load (ETag): an upgraded server never runs with stale modules.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """``StaticFiles`` that puts the console's security headers on every file it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def console_paths() -> frozenset[str]:
    """Every URL path the console serves: its files, and ``/`` for ``index.html``.

    These hold no data, so the bearer-token check lets ``GET`` of them through: a browser cannot add
    an ``Authorization`` header when it opens a page. Everything they call still needs the token.
    """
    files = {"/" + p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()}
    return frozenset({"/", *files})


def serve_console(app: FastAPI) -> None:
    """Serve the console at ``/``: ``GET`` and ``HEAD`` of a path no route matches go to its files.

    It is the router's fallback rather than a mount, so that a route added later still wins; any
    other request no route matches stays the router's 404 problem.
    """
    files = ConsoleFiles(directory=STATIC_DIR, html=True)
    not_found = app.router.default

    async def console_or_not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            await files(scope, receive, send)
        else:
            await not_found(scope, receive, send)

    app.router.default = console_or_not_found
