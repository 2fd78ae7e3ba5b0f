"""The web console's files, their headers, the token exemption, and the memory tier listing it shows.

In process (the app over httpx's ASGI transport, a real Redis); the pages themselves run in a real
browser in ``tests/browser/test_console.py``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from mcp_gemma.api.app import create_api
from mcp_gemma.api.console import STATIC_DIR, console_paths
from mcp_gemma.server.guard import GuardedApp
from mcp_gemma.server.run import build_http_app
from mcp_gemma.settings import Settings
from mcp_gemma.state import SharedState

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    shared = SharedState(settings)
    async with shared.hold():
        transport = httpx.ASGITransport(app=create_api(settings, shared))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client


async def test_the_console_is_served_at_the_root_with_security_headers(app_client: httpx.AsyncClient) -> None:
    page = await app_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    script = await app_client.get("/js/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["content-security-policy"] == CSP
    css = await app_client.get("/console.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"


async def test_routes_keep_working_beside_the_console(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/healthz")).json()["status"] == "ok"
    assert (await app_client.get("/v1/documents")).json()["total"] == 0
    docs = await app_client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert (await app_client.get("/openapi.json")).json()["info"]["title"] == "mcp-gemma"
    missing = await app_client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == (
        "nothing at /no/such/page; the API's paths are listed at /docs and /openapi.json"
    )
    posted = await app_client.post("/no/such/page")
    assert posted.status_code == 404, "only GET and HEAD reach the console's files"
    assert (await app_client.post("/")).status_code == 404
    assert (await app_client.get("/v1/search")).status_code == 405, "a route's other methods stay 405"


async def test_a_route_added_later_still_wins_over_the_console(settings: Settings) -> None:
    app = create_api(settings, SharedState(settings))

    @app.get("/later")
    async def later() -> dict[str, str]:
        return {"route": "later"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        assert (await client.get("/later")).json() == {"route": "later"}
        assert (await client.get("/")).status_code == 200


def test_no_inline_script_or_style_in_the_console() -> None:
    """The CSP forbids inline code: none may be there to break."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert "<style" not in html and " style=" not in html and " on" not in html.replace(" only", "")
    assert html.count("<script") == 1 and '<script type="module" src="js/app.js"></script>' in html
    for path in STATIC_DIR.rglob("*.js"):
        code = path.read_text(encoding="utf-8")
        assert "innerHTML" not in code and "eval(" not in code and "http://" not in code, path


def test_console_paths_are_the_files_and_the_root() -> None:
    paths = console_paths()
    assert {"/", "/index.html", "/console.css", "/favicon.svg", "/js/app.js", "/js/chat.js"} <= paths
    assert all(p == "/" or (STATIC_DIR / p.lstrip("/")).is_file() for p in paths)


async def test_the_console_files_need_no_token_but_the_api_does(settings: Settings) -> None:
    guarded = settings.model_copy(
        update={"http": settings.http.model_copy(update={"auth_token": SecretStr("tok-1")})}
    )
    shared = SharedState(guarded)
    app = build_http_app(guarded, shared)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/js/memory.js")).status_code == 200
        assert (await client.head("/index.html")).status_code == 200
        assert (await client.get("/js/nope.js")).status_code == 401, "only the console's own files"
        assert (await client.post("/")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200, "liveness, for container health checks"
        assert (await client.get("/readyz")).status_code == 401
        assert (await client.get("/openapi.json")).status_code == 401
        assert (await client.get("/v1/documents")).status_code == 401
        authed = await client.get("/openapi.json", headers={"authorization": "Bearer tok-1"})
        assert authed.status_code == 200


async def test_a_tier_lists_its_memories_with_their_expiry(app_client: httpx.AsyncClient) -> None:
    stored = await app_client.post(
        "/v1/memory", json={"content": ["first note", "second note"], "tier": "working", "agent_id": "ui"}
    )
    assert stored.status_code == 200, stored.text
    report = stored.json()
    listed = await app_client.get("/v1/memory/tiers/working", params={"agent_id": "ui"})
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["tier"] == "working" and page["agent_id"] == "ui"
    assert sorted(item["content"] for item in page["items"]) == ["first note", "second note"]
    assert {item["id"] for item in page["items"]} == set(report["ids"])
    assert {item["expires_at"] for item in page["items"]} == {report["expires_at"]}
    other = await app_client.get("/v1/memory/tiers/semantic", params={"agent_id": "ui"})
    assert other.json()["items"] == []
    bad = await app_client.get("/v1/memory/tiers/forever")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "working" in bad.json()["detail"]


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_the_chat_socket_takes_the_token_as_a_subprotocol(settings: Settings) -> None:
    """What the console does: a browser cannot set headers on a WebSocket, so it offers
    ``bearer.<base64url token>`` beside ``mcp-gemma.chat``; only the latter is echoed."""
    guarded = settings.model_copy(
        update={"http": settings.http.model_copy(update={"auth_token": SecretStr("tök/en+1")})}
    )
    shared = SharedState(guarded)
    async with shared.hold():
        transport = ASGIWebSocketTransport(app=build_http_app(guarded, shared))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            offered = ["mcp-gemma.chat", f"bearer.{_b64url('tök/en+1')}"]
            async with aconnect_ws("/v1/chat", client, subprotocols=offered) as ws:
                assert ws.subprotocol == "mcp-gemma.chat"
                with anyio.fail_after(30):
                    assert (await ws.receive_json())["type"] == "session"


async def test_a_wrong_or_missing_subprotocol_token_is_refused_before_the_app() -> None:
    reached: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["subprotocols"])

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    guard = GuardedApp(app, "tok-1")
    for offered, passes in (
        (["mcp-gemma.chat", f"bearer.{_b64url('tok-1')}"], True),
        (["mcp-gemma.chat"], False),
        (["mcp-gemma.chat", f"bearer.{_b64url('tok-2')}"], False),
        (["bearer.!!not-base64"], False),
        (["bearer."], False),
    ):
        reached.clear()
        sent.clear()
        scope = {"type": "websocket", "path": "/v1/chat", "headers": [], "subprotocols": offered}
        await guard(scope, receive, send)
        assert reached == ([offered] if passes else []), offered
        expected = [] if passes else [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]
        assert sent == expected, offered
