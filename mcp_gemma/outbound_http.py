"""Outbound HTTP that goes only where it was checked to go (SSRF and DNS-rebinding guard).

A URL is parsed once (with httpx's own parser, so the check and the connection see the same
host), its host is matched against an allow-list and resolved once; every address must be public
unless the policy allows private networks. The connection is then opened to exactly those checked
addresses: :class:`PinnedBackend` sits under httpcore and maps each host to the addresses checked
for it, so httpx never resolves the name a second time (a rebinding DNS server gets one answer
only). The URL, the ``Host`` header, TLS SNI and certificate verification all keep the real host
name, because only the TCP connect target changes. Redirects are followed by hand, each hop
checked and pinned the same way; the body is streamed and cut at a byte limit.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore
import httpx

from mcp_gemma.errors import AccessDeniedError, InvalidInputError

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``; the default asks the system resolver through anyio."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: IPv4 inside IPv6


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs may be fetched, and the settings that widen it (named in refusals)."""

    allowed_hosts: Sequence[str]
    allow_private: bool
    hosts_setting: str
    private_setting: str


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the policy, with the addresses its host may be reached at."""

    url: httpx.URL
    host: str  # the ASCII (IDNA) host httpcore connects to
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class FetchedBody:
    """A fetched response: where redirects ended, its content type and (possibly cut) body."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Exact host match, or a ``*.example.org`` pattern matching the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pat = pattern.lower().rstrip(".")
        if pat.startswith("*."):
            base = pat[2:]
            if host == base or host.endswith("." + base):
                return True
        elif host == pat:
            return True
    return False


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96) IPv6 address carries."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True for a globally routable unicast address; IPv4 carried inside IPv6 is judged as IPv4."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return is_public_address(embedded)
    return address.is_global and not address.is_multicast and not address.is_reserved


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address the system resolver gives for ``host`` (TCP), in its order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, policy: UrlPolicy, resolver: Resolver | None = None) -> CheckedUrl:
    """Refuse non-http(s), non-allow-listed or (unless allowed) non-public URLs; resolve the host once."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidInputError(f"{url!r} is not an http(s) URL with a host") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise InvalidInputError(f"{url!r} is not an http(s) URL with a host")
    host = parsed.raw_host.decode("ascii")
    if not (host_allowed(parsed.host, policy.allowed_hosts) or host_allowed(host, policy.allowed_hosts)):
        allowed = ", ".join(policy.allowed_hosts) or "none configured"
        raise AccessDeniedError(
            f"host {parsed.host!r} is not on the URL allow-list ({policy.hosts_setting}); allowed: {allowed}"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if _parse_ip(host) is not None:
        found: Sequence[str] = [host]
    else:
        try:
            found = await (resolver or system_resolver)(host, port)
        except OSError as exc:
            raise InvalidInputError(f"cannot resolve {parsed.host!r}: {exc}") from None
    addresses = tuple(dict.fromkeys(found))
    if not addresses:
        raise InvalidInputError(f"cannot resolve {parsed.host!r}: no addresses")
    for text in addresses:
        address = _parse_ip(text)
        if address is None:
            raise InvalidInputError(f"{parsed.host!r} resolved to {text!r}, which is not an IP address")
        if not policy.allow_private and not is_public_address(address):
            embedded = embedded_ipv4(address)
            shown = f"{address} (IPv4 {embedded})" if embedded else str(address)
            raise AccessDeniedError(
                f"{parsed.host!r} resolves to {shown}, a private, loopback or reserved address; "
                f"refused (set {policy.private_setting} to allow it)"
            )
    return CheckedUrl(parsed, host, addresses)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to the addresses checked for a host, never by name.

    httpcore hands ``connect_tcp`` the URL's host; this looks it up in the pins set by
    :func:`fetch` and connects to those addresses in turn. A host with no pin is refused, so
    nothing that skipped the check can connect. TLS is layered on afterwards by httpcore with the
    URL's host as SNI and for certificate verification, so pinning does not weaken either.
    """

    def __init__(self, network: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._network = network or httpcore.AnyIOBackend()
        self._pins: dict[str, tuple[str, ...]] = {}

    def pin(self, host: str, addresses: Sequence[str]) -> None:
        """Let ``host`` be reached at ``addresses`` (which the caller has checked), and nowhere else."""
        self._pins[host.lower()] = tuple(addresses)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore passes it by name)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get(host.lower())
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} was not checked; refusing to connect")
        options = list(socket_options) if socket_options is not None else None
        for address in addresses[:-1]:  # the next checked address when one is unreachable
            try:
                return await self._network.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                logger.debug("connecting %s at %s failed: %s", host, address, exc)
        return await self._network.connect_tcp(
            addresses[-1], port, timeout=timeout, local_address=local_address, socket_options=options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore passes it by name)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through a guarded fetch")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request mapping, error mapping) over a pool that uses ``backend``."""

    def __init__(self, backend: PinnedBackend) -> None:
        ssl_context = httpx.create_ssl_context()  # verifies certificates against the URL's host
        limits = httpx.Limits()
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # httpx has no public knob for the network backend, so the pool it built is replaced by
        # the same pool over the pinned backend (and never a proxy: a proxy connects by name).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


async def fetch(
    url: str,
    policy: UrlPolicy,
    *,
    max_bytes: int,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> FetchedBody:
    """GET ``url`` under ``policy``, following up to :data:`MAX_REDIRECTS` redirects, each checked.

    The body is read as a stream and cut after ``max_bytes``; the whole call (resolution included)
    is bounded by ``timeout_s`` and raises :class:`TimeoutError` past it. ``resolver`` and
    ``network`` replace the system resolver and socket layer (tests use them).
    """
    backend = PinnedBackend(network)
    with anyio.fail_after(timeout_s):
        async with httpx.AsyncClient(
            transport=_PinnedTransport(backend),
            follow_redirects=False,
            timeout=timeout_s,
            trust_env=False,
        ) as client:
            current = url
            for _hop in range(MAX_REDIRECTS + 1):
                checked = await check_url(current, policy, resolver)
                backend.pin(checked.host, checked.addresses)
                async with client.stream("GET", checked.url, headers=headers) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise InvalidInputError(f"{current} redirects without a Location header")
                        current = str(checked.url.join(location))
                        logger.debug("redirect to %s", current)
                        continue
                    if resp.status_code >= 400:
                        raise InvalidInputError(f"{current} answered HTTP {resp.status_code}")
                    body = bytearray()
                    truncated = False
                    async for part in resp.aiter_bytes():
                        body.extend(part)
                        if len(body) > max_bytes:
                            del body[max_bytes:]
                            truncated = True
                            break
                    return FetchedBody(
                        url=current,
                        status=resp.status_code,
                        content_type=resp.headers.get("content-type", "").lower(),
                        charset=resp.charset_encoding,
                        body=bytes(body),
                        truncated=truncated,
                    )
    raise InvalidInputError(f"{url} redirected more than {MAX_REDIRECTS} times")
