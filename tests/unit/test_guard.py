"""The HTTP guard at the ASGI level, in front of the real REST API, with a test clock (no sleeps).

Each test drives ``GuardedApp`` through httpx's ASGI transport from chosen client addresses; the
subprocess tests in ``tests/integration/test_security_http.py`` cover the same guard on a served port.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from mcp_gemma.api.app import create_api
from mcp_gemma.security.config import RateLimitSettings
from mcp_gemma.security.principals import Principal, TokenRegistry, principal_of_scope, token_digest
from mcp_gemma.server.guard import GuardedApp
from mcp_gemma.settings import load_settings
from mcp_gemma.state import SharedState

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def guarded(tmp_path: Path, clock: Clock, registry: TokenRegistry | None = None, **limits: Any) -> GuardedApp:
    settings = load_settings(data_dir=tmp_path / "data")
    api = create_api(settings, SharedState(settings))
    return GuardedApp(
        api,
        registry=registry or TokenRegistry(),
        limits=RateLimitSettings(**limits),
        mcp_path="/mcp",
        clock=clock,
    )


def client(app: GuardedApp, ip: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers)


def registry(**tokens: Principal) -> TokenRegistry:
    return TokenRegistry((token_digest(t.encode()), p) for t, p in tokens.items())


async def test_ip_bucket_429_with_retry_after_then_refills(tmp_path: Path) -> None:
    clock = Clock()
    app = guarded(tmp_path, clock, ip_burst=3, ip_requests_per_s=0.5)
    async with client(app, "10.0.0.1") as one, client(app, "10.0.0.2") as two:
        assert [(await one.get("/healthz")).status_code for _ in range(3)] == [200, 200, 200]
        refused = await one.get("/healthz")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["status"] == 429 and body["title"] == "Too many requests"
        assert "rate limit reached for 10.0.0.1" in body["detail"]
        assert (await two.get("/healthz")).status_code == 200, "another IP has its own bucket"
        clock.now += 2
        assert (await one.get("/healthz")).status_code == 200
        assert (await one.get("/healthz")).status_code == 429


async def test_principal_bucket_spans_ips(tmp_path: Path) -> None:
    clock = Clock()
    tokens = registry(**{"alice-token-0123456789": Principal("alice")})
    app = guarded(tmp_path, clock, tokens, principal_burst=2, principal_requests_per_s=1)
    async with (
        client(app, "10.0.0.1", "alice-token-0123456789") as one,
        client(app, "10.0.0.2", "alice-token-0123456789") as two,
    ):
        assert (await one.get("/healthz")).status_code == 200
        assert (await two.get("/healthz")).status_code == 200
        refused = await two.get("/healthz")
        assert refused.status_code == 429
        assert "principal 'alice'" in refused.json()["detail"]


async def test_lockout_after_wrong_tokens_then_cool_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    tokens = registry(**{"right-token-0123456789": Principal("alice")})
    app = guarded(tmp_path, clock, tokens, lockout_failures=10, lockout_window_s=60, lockout_s=300)
    async with (
        client(app, "10.0.0.9", "wrong") as attacker,
        client(app, "10.0.0.9", "right-token-0123456789") as same_ip,
        client(app, "10.0.0.8", "right-token-0123456789") as other_ip,
        client(app, "10.0.0.9") as no_token,
    ):
        assert (await no_token.get("/healthz")).status_code == 401, "a missing token is not a guess"
        with caplog.at_level(logging.WARNING, logger="mcp_gemma.server.guard"):
            statuses = [(await attacker.get("/healthz")).status_code for _ in range(10)]
        assert statuses == [401] * 10
        assert "locked out 10.0.0.9 for 300 s after 10 wrong bearer tokens within 60 s" in caplog.text
        locked = await same_ip.get("/healthz")
        assert locked.status_code == 429, "the right token does not help during the cool-down"
        assert locked.headers["retry-after"] == "300"
        assert locked.json()["title"] == "Locked out"
        assert (await other_ip.get("/healthz")).status_code == 200
        clock.now += 300
        assert (await same_ip.get("/healthz")).status_code == 200


async def test_three_hundred_wrong_tokens_at_once_lock_out_after_the_tenth(tmp_path: Path) -> None:
    clock = Clock()
    tokens = registry(**{"right-token-0123456789": Principal("alice")})
    app = guarded(tmp_path, clock, tokens)
    async with client(app, "10.0.0.7", "guess") as attacker:
        statuses = [(await attacker.get("/healthz")).status_code for _ in range(300)]
    assert statuses.count(401) == 10 and statuses.count(429) == 290


async def test_new_sessions_per_ip_limited_and_sessionless_posts_refunded(tmp_path: Path) -> None:
    clock = Clock()
    app = guarded(tmp_path, clock, session_burst=2, sessions_per_s=0.01)
    async with client(app, "10.0.0.3") as one:
        # The REST API answers /mcp with 404 here (no session id header in the answer), so each POST
        # is refunded: sessionless requests never use up the session budget.
        assert [(await one.post("/mcp", json={})).status_code for _ in range(5)] == [404] * 5
        with_session = await one.post("/mcp", json={}, headers={"mcp-session-id": "abc"})
        assert with_session.status_code == 404


async def test_limits_off_lets_everything_through(tmp_path: Path) -> None:
    app = guarded(tmp_path, Clock(), enabled=False, ip_burst=1)
    async with client(app, "10.0.0.4") as one:
        assert [(await one.get("/healthz")).status_code for _ in range(5)] == [200] * 5


async def test_principal_reaches_the_route(tmp_path: Path) -> None:
    api = FastAPI()

    @api.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        found = principal_of_scope(request.scope)
        assert found is not None and found is request.state.principal
        return {"name": found.name, "access": found.access}

    tokens = registry(**{"reader-token-0123456789": Principal("reader", "read")})
    app = GuardedApp(api, registry=tokens)
    async with client(app, "10.0.0.5", "reader-token-0123456789") as one:
        assert (await one.get("/whoami")).json() == {"name": "reader", "access": "read"}


async def test_websocket_handshake_needs_the_token(tmp_path: Path) -> None:
    tokens = registry(**{"right-token-0123456789": Principal("alice")})
    app = guarded(tmp_path, Clock(), tokens)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/v1/chat",
        "headers": [],
        "client": ("10.0.0.6", 1),
        "extensions": {"websocket.http.response": {}},
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 401
    sent.clear()
    await app({**scope, "extensions": {}}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]


def forwarded(app: GuardedApp, peer: str, chain: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers={"x-forwarded-for": chain}
    )


async def test_trusted_proxy_limits_each_forwarded_client_apart(tmp_path: Path) -> None:
    clock = Clock()
    app = guarded(tmp_path, clock, ip_burst=2, ip_requests_per_s=0.5, trusted_proxies=["10.9.0.0/16"])
    # Two clients behind the same proxy (10.9.0.5) each get their own bucket.
    async with (
        forwarded(app, "10.9.0.5", "203.0.113.7") as one,
        forwarded(app, "10.9.0.5", "198.51.100.4, 10.9.0.6") as two,
    ):
        assert [(await one.get("/healthz")).status_code for _ in range(2)] == [200, 200]
        refused = await one.get("/healthz")
        assert refused.status_code == 429
        assert "rate limit reached for 203.0.113.7" in refused.json()["detail"]
        # The second chain went through two trusted proxies: the client is the first untrusted hop.
        assert [(await two.get("/healthz")).status_code for _ in range(2)] == [200, 200]
        assert "198.51.100.4" in (await two.get("/healthz")).json()["detail"]


async def test_forwarded_for_ignored_from_untrusted_peers_and_when_garbled(tmp_path: Path) -> None:
    clock = Clock()
    app = guarded(tmp_path, clock, ip_burst=1, ip_requests_per_s=0.5, trusted_proxies=["10.9.0.5"])
    # Not a trusted proxy: its forged header is ignored, the peer is limited.
    async with forwarded(app, "192.0.2.1", "203.0.113.99") as direct:
        assert (await direct.get("/healthz")).status_code == 200
        assert "rate limit reached for 192.0.2.1" in (await direct.get("/healthz")).json()["detail"]
    # A garbled hop stops the walk at the last good address (here the proxy itself).
    async with forwarded(app, "10.9.0.5", "203.0.113.8, not-an-ip") as garbled:
        assert (await garbled.get("/healthz")).status_code == 200
        assert "rate limit reached for 10.9.0.5" in (await garbled.get("/healthz")).json()["detail"]
    # Ports and bracketed IPv6 are read as addresses.
    async with forwarded(app, "10.9.0.5", "[2001:db8::7]:4711") as six:
        assert (await six.get("/healthz")).status_code == 200
        assert "rate limit reached for 2001:db8::7" in (await six.get("/healthz")).json()["detail"]


def test_trusted_proxies_setting_refuses_what_is_not_a_network() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an IP address or CIDR network"):
        RateLimitSettings(trusted_proxies=["proxy.example"])
    assert RateLimitSettings(trusted_proxies=[" 10.0.0.0/8 "]).trusted_proxies == ["10.0.0.0/8"]
