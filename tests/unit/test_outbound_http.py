"""The guarded fetcher: address policy, DNS pinning (no second lookup), redirects re-checked, TLS names.

No outside network is reachable here, so "the internet" is a local server behind a stand-in socket
layer: a public address the resolver hands out is routed to 127.0.0.1, everything else is
unreachable, and every connection attempt is recorded.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcp_gemma.errors import AccessDeniedError, InvalidInputError
from mcp_gemma.outbound_http import (
    MAX_REDIRECTS,
    PinnedBackend,
    UrlPolicy,
    check_url,
    fetch,
    is_public_address,
)

PUBLIC = "93.184.216.34"  # stands for a public web server; routed to the local one below


class _Server(ThreadingHTTPServer):
    requests: list[tuple[str, str | None]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host")))
        port = self.server.server_address[1]
        targets = {
            "/to-internal": f"http://internal.test:{port}/secret",
            "/to-loopback": f"http://127.0.0.1:{port}/secret",
            "/to-mapped": f"http://[::ffff:127.0.0.1]:{port}/secret",
            "/to-elsewhere": f"http://elsewhere.test:{port}/secret",
            "/to-public": f"http://public.test:{port}/page",
            "/to-file": "file:///etc/passwd",
            "/loop": "/loop",
        }
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.end_headers()
            return
        body = b"<html><title>T</title><body>hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def site() -> Iterator[_Server]:
    yield from _serve()


class _Resolver:
    """A DNS stand-in: fixed answers, or a rebinding one (public first, loopback afterwards)."""

    def __init__(self, answers: dict[str, list[str]], rebind_to: str | None = None) -> None:
        self.answers = answers
        self.rebind_to = rebind_to
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if self.rebind_to is not None and len(self.calls) > 1:
            return [self.rebind_to]
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return self.answers[host]


class _Internet(httpcore.AsyncNetworkBackend):
    """The socket layer: records each attempt; a name is looked up the way a system stack would."""

    def __init__(self, routes: dict[str, str], resolver: _Resolver | None = None) -> None:
        self.routes = routes
        self.resolver = resolver
        self.attempts: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        address = host
        if self.resolver is not None and not _is_ip(host):
            address = (await self.resolver(host, port))[0]
        if address not in self.routes:
            raise httpcore.ConnectError(f"{address} is unreachable in this test")
        return await self._real.connect_tcp(self.routes[address], port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _policy(hosts: Sequence[str], *, allow_private: bool) -> UrlPolicy:
    return UrlPolicy(
        allowed_hosts=tuple(hosts),
        allow_private=allow_private,
        hosts_setting="test.hosts",
        private_setting="test.allow_private",
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged as the IPv4 inside
        ("64:ff9b::808:808", True),  # NAT64 of a public address
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::7f00:1", False),  # IPv4-compatible (deprecated) loopback
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 around 10.0.0.1
        ("2001::1", False),  # Teredo
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.anyio
async def test_check_url_parses_and_refuses() -> None:
    policy = _policy(["127.0.0.1", "::1", "::ffff:127.0.0.1", "*.example.org"], allow_private=False)
    for url in ["file:///etc/passwd", "gopher://x.example.org/", "http:///nohost", "http://[::1/"]:
        with pytest.raises(InvalidInputError, match="not an http"):
            await check_url(url, policy)
    with pytest.raises(
        AccessDeniedError, match=r"'10\.0\.0\.1' is not on the URL allow-list \(test\.hosts\)"
    ):
        await check_url("http://10.0.0.1/", policy)
    for url in ["http://127.0.0.1:8080/", "http://[::1]/", "http://[::ffff:127.0.0.1]/"]:
        with pytest.raises(AccessDeniedError, match=r"private, loopback.*set test\.allow_private to allow"):
            await check_url(url, policy)
    # one private answer among public ones is enough to refuse
    mixed = _Resolver({"a.example.org": [PUBLIC, "10.0.0.1"]})
    with pytest.raises(AccessDeniedError, match=r"resolves to 10\.0\.0\.1"):
        await check_url("http://a.example.org/", policy, mixed)
    with pytest.raises(InvalidInputError, match=r"cannot resolve 'b\.example\.org'"):
        await check_url("http://b.example.org/", policy, mixed)
    checked = await check_url("https://[::1]:8443/x", _policy(["::1"], allow_private=True))
    assert (checked.host, checked.addresses) == ("::1", ("::1",))
    checked = await check_url(
        "https://A.Example.ORG/", policy, _Resolver({"a.example.org": [PUBLIC, PUBLIC]})
    )
    assert (checked.host, checked.addresses) == ("a.example.org", (PUBLIC,))


@pytest.mark.anyio
async def test_local_server_with_private_allowed(site: _Server) -> None:
    port = site.server_address[1]
    got = await fetch(
        f"http://127.0.0.1:{port}/page",
        _policy(["127.0.0.1"], allow_private=True),
        max_bytes=1000,
        timeout_s=10,
    )
    assert (got.status, got.url, got.content_type) == (200, f"http://127.0.0.1:{port}/page", "text/html")
    assert b"hello" in got.body and not got.truncated
    cut = await fetch(
        f"http://127.0.0.1:{port}/page",
        _policy(["127.0.0.1"], allow_private=True),
        max_bytes=10,
        timeout_s=10,
    )
    assert cut.body == b"<html><tit" and cut.truncated
    # a name pinned to the address it was checked at; the request still carries the name
    resolver = _Resolver({"site.test": ["127.0.0.1"]})
    got = await fetch(
        f"http://site.test:{port}/named",
        _policy(["site.test"], allow_private=True),
        max_bytes=1000,
        timeout_s=10,
        resolver=resolver,
    )
    assert got.status == 200 and resolver.calls == ["site.test"]
    assert site.requests[-1] == ("/named", f"site.test:{port}")


@pytest.mark.anyio
async def test_local_server_refused_without_private_allowed(site: _Server) -> None:
    port = site.server_address[1]
    with pytest.raises(AccessDeniedError, match="private, loopback or reserved"):
        await fetch(
            f"http://127.0.0.1:{port}/page",
            _policy(["127.0.0.1"], allow_private=False),
            max_bytes=1000,
            timeout_s=10,
        )
    with pytest.raises(AccessDeniedError, match=r"'site\.test' resolves to 127\.0\.0\.1"):
        await fetch(
            f"http://site.test:{port}/page",
            _policy(["site.test"], allow_private=False),
            max_bytes=1000,
            timeout_s=10,
            resolver=_Resolver({"site.test": ["127.0.0.1"]}),
        )
    assert site.requests == []


@pytest.mark.anyio
async def test_rebinding_connects_only_to_the_checked_address(site: _Server) -> None:
    """The resolver answers public once, then loopback: the connection goes to the public answer."""
    port = site.server_address[1]
    resolver = _Resolver({"rebind.test": [PUBLIC]}, rebind_to="127.0.0.1")
    # A socket layer that resolved names itself would get the second (loopback) answer and reach
    # the local server; only 127.0.0.1 is routable here, the checked public address is not.
    internet = _Internet({"127.0.0.1": "127.0.0.1"}, resolver)
    with pytest.raises(httpx.ConnectError, match=f"{PUBLIC} is unreachable"):
        await fetch(
            f"http://rebind.test:{port}/secret",
            _policy(["rebind.test"], allow_private=False),
            max_bytes=1000,
            timeout_s=10,
            resolver=resolver,
            network=internet,
        )
    assert internet.attempts == [(PUBLIC, port)]
    assert resolver.calls == ["rebind.test"]
    assert site.requests == []


@pytest.mark.anyio
async def test_redirect_hops_are_checked_and_pinned(site: _Server) -> None:
    port = site.server_address[1]
    policy = _policy(["public.test", "internal.test", "127.0.0.1", "::ffff:127.0.0.1"], allow_private=False)
    resolver = _Resolver({"public.test": [PUBLIC], "internal.test": ["10.1.2.3"]})
    internet = _Internet({PUBLIC: "127.0.0.1"})

    async def get(path: str) -> Any:
        return await fetch(
            f"http://public.test:{port}{path}",
            policy,
            max_bytes=1000,
            timeout_s=10,
            resolver=resolver,
            network=internet,
        )

    got = await get("/to-public")
    assert got.url == f"http://public.test:{port}/page" and b"hello" in got.body
    with pytest.raises(AccessDeniedError, match=r"'internal\.test' resolves to 10\.1\.2\.3"):
        await get("/to-internal")
    with pytest.raises(AccessDeniedError, match=r"'127\.0\.0\.1' resolves to 127\.0\.0\.1"):
        await get("/to-loopback")
    with pytest.raises(AccessDeniedError, match=r"resolves to ::ffff:7f00:1 \(IPv4 127\.0\.0\.1\)"):
        await get("/to-mapped")
    with pytest.raises(AccessDeniedError, match=r"'elsewhere\.test' is not on the URL allow-list"):
        await get("/to-elsewhere")
    with pytest.raises(InvalidInputError, match="not an http"):
        await get("/to-file")
    with pytest.raises(InvalidInputError, match=f"redirected more than {MAX_REDIRECTS} times"):
        await get("/loop")
    assert "/secret" not in {path for path, _ in site.requests}
    assert {host for host, _ in internet.attempts} == {PUBLIC}


@pytest.mark.anyio
async def test_unpinned_host_cannot_connect() -> None:
    with pytest.raises(httpcore.ConnectError, match="was not checked"):
        await PinnedBackend().connect_tcp("example.org", 80)


def _certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A test CA (its PEM) and a leaf certificate for site.test signed by it (PEM and key)."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("site.test")]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("netguard test CA", "netguard test CA", ca_key, ca_key, ca=True)
    leaf = build("site.test", "netguard test CA", leaf_key, ca_key, ca=False)
    paths = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.mark.anyio
async def test_tls_keeps_the_hostname_for_sni_and_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned to 127.0.0.1, the TLS handshake still names site.test and checks the certificate for it."""
    ca, leaf, key = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # httpx's default context trusts the test CA
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(leaf, key)
    server_names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    servers = _serve(tls)
    site = next(servers)
    try:
        port = site.server_address[1]
        policy = _policy(["site.test", "other.test"], allow_private=True)
        resolver = _Resolver({"site.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        got = await fetch(
            f"https://site.test:{port}/page", policy, max_bytes=1000, timeout_s=10, resolver=resolver
        )
        assert got.status == 200 and b"hello" in got.body
        assert server_names == ["site.test"]
        assert site.requests == [("/page", f"site.test:{port}")]
        # the same pinned address under a name the certificate does not cover: verification fails
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            await fetch(
                f"https://other.test:{port}/page", policy, max_bytes=1000, timeout_s=10, resolver=resolver
            )
        assert server_names[-1] == "other.test"
        assert len(site.requests) == 1
    finally:
        next(servers, None)
