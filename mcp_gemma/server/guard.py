"""The HTTP guard in front of the MCP endpoint and the REST API: bearer tokens, rate limits, lockout.

Every HTTP request and WebSocket handshake passes here first, in this order:

1. a client IP locked out for wrong tokens gets ``429`` until the cool-down ends;
2. when tokens are configured, the bearer token must name a principal (``401`` otherwise; a wrong
   token counts towards the IP's lockout, a missing one does not);
3. the IP's and the principal's token buckets each give one token (``429`` + ``Retry-After``);
4. a request that may open an MCP session (a POST to the Streamable HTTP path without a session id,
   a GET of the SSE stream) takes one from the IP's session bucket; it is given back when no session
   was opened after all;
5. with tokens, a Streamable HTTP session belongs to the principal that opened it: a request with its
   ``Mcp-Session-Id`` from another principal gets ``404``, as for a session that does not exist.

The client is the TCP peer, or, when the peer is one of ``http.limits.trusted_proxies``, the address
its ``X-Forwarded-For`` names (:class:`ForwardedFor`).

Passed without a token (still rate-limited): ``GET``/``HEAD`` of ``public_paths`` (the web console's
static files, which hold no data, and ``/healthz``, which says only that the process is up), and a
browser's CORS preflight (it never carries credentials and is answered with CORS headers only). A
browser cannot put headers on a WebSocket, so there the token may come as the subprotocol
``bearer.<base64url token>`` (never in the URL, which access logs keep).

The principal goes into the ASGI scope's ``state`` (``request.state.principal`` for the REST API, the
MCP middleware reads it from the request the SDK keeps). Refusals are ``application/problem+json``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gemma.api.problems import PROBLEM_JSON
from mcp_gemma.security.config import RateLimitSettings
from mcp_gemma.security.jwt import JwtVerifier
from mcp_gemma.security.limits import Clock, KeyedBuckets, Lockout, retry_after
from mcp_gemma.security.principals import ANONYMOUS, SCOPE_KEY, Principal, TokenRegistry

logger = logging.getLogger(__name__)

SESSION_HEADER = b"mcp-session-id"


class GuardedApp:
    """ASGI wrapper: authenticate (``Authorization: Bearer <token>``), rate-limit, attach the principal.

    ``GuardedApp(app, token)`` keeps its first form (one token, default limits); ``registry`` adds the
    principals of a tokens file, ``verifier`` OAuth JWT access tokens, ``limits`` the rate limits,
    ``clock`` a test clock.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        *,
        registry: TokenRegistry | None = None,
        verifier: JwtVerifier | None = None,
        limits: RateLimitSettings | None = None,
        mcp_path: str | None = None,
        sse_path: str | None = None,
        public_paths: frozenset[str] = frozenset(),
        clock: Clock = time.monotonic,
    ) -> None:
        self.app = app
        self.public_paths = public_paths
        self.registry = registry if registry is not None else TokenRegistry.build(token, None)
        self.verifier = verifier
        self.authenticating = bool(self.registry) or verifier is not None
        self.limits = limits or RateLimitSettings()
        self.mcp_path = mcp_path.rstrip("/") if mcp_path else None
        self.sse_path = sse_path.rstrip("/") if sse_path else None
        lim, keep = self.limits, self.limits.max_tracked_clients
        self.ip_buckets = KeyedBuckets(lim.ip_requests_per_s, lim.ip_burst, clock=clock, max_keys=keep)
        self.principal_buckets = KeyedBuckets(
            lim.principal_requests_per_s, lim.principal_burst, clock=clock, max_keys=keep
        )
        self.session_buckets = KeyedBuckets(lim.sessions_per_s, lim.session_burst, clock=clock, max_keys=keep)
        self.session_owners: OrderedDict[bytes, str] = OrderedDict()
        """Streamable HTTP session id → the principal that opened it (another one gets 404)."""
        self.proxies = ForwardedFor(self.limits.trusted_proxies)
        self.lockout = Lockout(
            lim.lockout_failures, lim.lockout_window_s, lim.lockout_s, clock=clock, max_keys=keep
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        ip = self.proxies.client_ip(scope)
        limited = self.limits.enabled
        if limited:
            locked = self.lockout.locked_for(ip)
            if locked > 0:
                await _refuse(
                    scope,
                    send,
                    429,
                    "Locked out",
                    f"too many wrong bearer tokens from {ip}: every request from it is refused for "
                    f"{retry_after(locked)} s more",
                    retry=retry_after(locked),
                )
                return
        public = _is_preflight(scope) or (
            scope.get("method") in ("GET", "HEAD") and scope.get("path") in self.public_paths
        )
        principal = ANONYMOUS if public else self._principal(scope, ip)
        if principal is None:
            await _refuse(
                scope,
                send,
                401,
                "Unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the server's "
                "MCP_GEMMA_AUTH_TOKEN (or a token of its http.tokens_file)",
                headers=[(b"www-authenticate", b'Bearer realm="mcp-gemma"')],
            )
            return
        if limited:
            wait = self.ip_buckets.take(ip)
            if not wait and self.authenticating:
                wait = self.principal_buckets.take(principal.name)
            if wait:
                await _refuse(
                    scope,
                    send,
                    429,
                    "Too many requests",
                    f"rate limit reached for {ip} / principal {principal.name!r}: retry in "
                    f"{retry_after(wait)} s (http.limits)",
                    retry=retry_after(wait),
                )
                return
        scope["state"] = {**scope.get("state", {}), SCOPE_KEY: principal}
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session_id = _header(scope, SESSION_HEADER)
        if session_id is not None and self.authenticating:
            owner = self.session_owners.get(session_id)
            if owner is not None and owner != principal.name:
                # Another principal's session: as unknown to this one as a session that never was.
                await _refuse(scope, send, 404, "Not found", "session not found; start a new one")
                return
        opening = self._may_open_session(scope)
        if opening is None:
            await self.app(scope, receive, send)
            return
        if limited:
            wait = self.session_buckets.take(ip)
            if wait:
                await _refuse(
                    scope,
                    send,
                    429,
                    "Too many new sessions",
                    f"too many new MCP sessions from {ip}: retry in {retry_after(wait)} s "
                    "(http.limits.sessions_per_s, session_burst)",
                    retry=retry_after(wait),
                )
                return
        if opening == "sse":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._watch_new_session(ip, principal, send, refund=limited))

    def _principal(self, scope: Scope, ip: str) -> Principal | None:
        if not self.authenticating:
            return ANONYMOUS
        token = _bearer(scope)
        if token is None:
            return None
        found = self.registry.lookup(token)
        if found is None and self.verifier is not None:
            found = self.verifier.verify(token)
        if found is None and self.limits.enabled and self.lockout.fail(ip):
            logger.warning(
                "locked out %s for %.0f s after %d wrong bearer tokens within %.0f s",
                ip,
                self.limits.lockout_s,
                self.limits.lockout_failures,
                self.limits.lockout_window_s,
            )
        return found

    def _may_open_session(self, scope: Scope) -> str | None:
        """``"mcp"`` or ``"sse"`` when the request may open a new MCP session, else None."""
        path = str(scope.get("path", "")).rstrip("/")
        method = scope.get("method")
        if self.sse_path is not None and path == self.sse_path and method == "GET":
            return "sse"
        new = _header(scope, SESSION_HEADER) is None
        if self.mcp_path is not None and path == self.mcp_path and method == "POST" and new:
            return "mcp"
        return None

    def _watch_new_session(self, ip: str, principal: Principal, send: Send, *, refund: bool) -> Send:
        """Bind the session the response opens to ``principal``; when it opens none (a sessionless
        request, an error) give the session token back."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = next(
                    (bytes(v) for k, v in message.get("headers", []) if k.lower() == SESSION_HEADER), None
                )
                if opened is None:
                    if refund:
                        self.session_buckets.give_back(ip)
                elif self.authenticating:
                    self.session_owners[opened] = principal.name
                    while len(self.session_owners) > self.limits.max_tracked_clients:
                        self.session_owners.popitem(last=False)
            await send(message)

        return watch


class ForwardedFor:
    """The client address of a request, through the trusted reverse proxies in front of the server.

    With no trusted proxies the TCP peer is the client (``X-Forwarded-For`` is ignored: anyone can send
    it). When the peer is a trusted proxy, the forwarded chain is read from the right, each proxy having
    appended the address it saw, and the first address that is not itself a trusted proxy is the
    client; a malformed entry stops the walk at the last address known good, so a forged or garbled
    header can never name an address the trusted proxies did not see.
    """

    MAX_HEADER_BYTES = 4096

    def __init__(self, trusted: list[str]) -> None:
        self.networks = [ipaddress.ip_network(item, strict=False) for item in trusted]

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if not self.networks or not self.trusts(peer):
            return peer
        chain: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                chain.extend(value[: self.MAX_HEADER_BYTES].decode("latin-1").split(","))
        current = peer
        for entry in reversed(chain):
            address = _strip_port(entry.strip())
            try:
                ipaddress.ip_address(address)
            except ValueError:
                return current
            current = address
            if not self.trusts(address):
                return address
        return current


def _strip_port(entry: str) -> str:
    """``1.2.3.4:5678`` → ``1.2.3.4``, ``[::1]:80`` → ``::1``; a bare IPv6 address stays whole."""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


WS_BEARER_PREFIX = "bearer."


def _bearer(scope: Scope) -> bytes | None:
    value = _header(scope, b"authorization")
    if value is None and scope["type"] == "websocket":
        for offered in scope.get("subprotocols", ()):
            offered = str(offered).strip()
            if offered.startswith(WS_BEARER_PREFIX):
                return _unbase64url(offered[len(WS_BEARER_PREFIX) :]) or None
        return None
    if value is None or value[:7].lower() != b"bearer ":
        return None
    token = value[7:].strip()
    return token or None


def _unbase64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return b""


def _is_preflight(scope: Scope) -> bool:
    """A browser's CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``)."""
    return scope.get("method") == "OPTIONS" and _header(scope, b"access-control-request-method") is not None


_SLUGS = {401: "unauthorized", 404: "not-found", 429: "rate-limited"}


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    retry: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with a problem+json body (a WebSocket handshake gets it too where the server can)."""
    kind = f"urn:mcp-gemma:problem:{_SLUGS[status]}" if status in _SLUGS else "about:blank"
    body = json.dumps({"type": kind, "title": title, "status": status, "detail": detail}).encode()
    extra = list(headers or [])
    if retry is not None:
        extra.append((b"retry-after", str(retry).encode()))
    head = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()), *extra]
    if scope["type"] == "websocket":
        extensions: Mapping[str, Any] = scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            await send({"type": "websocket.http.response.start", "status": status, "headers": head})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": title})
        return
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
