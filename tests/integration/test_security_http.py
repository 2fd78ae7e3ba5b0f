"""Principals, TLS, rate limits and lockout on a served port, through real clients.

One server runs HTTPS (a self-signed certificate made here, pinned by the clients) with a tokens
file of three principals, and is driven by the MCP SDK client: cross-namespace reads, writes and
clears are refused, a read-only principal cannot write, and the audit log records who did what. A
second server has small limits and is driven by raw HTTP: the session limit, lockout after wrong
tokens, and the WebSocket handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import ResourceTemplateReference

from ..unit.test_jwt import AUDIENCE, EC_KEY, ISSUER, b64, sign
from .conftest import BearerTransport, SpawnedServer, server_env
from .test_transports import INIT

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-gemma test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    keyfile.chmod(0o600)
    return certfile, keyfile


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SpawnedServer, Path, Path]]:
    base = tmp_path_factory.mktemp("tls")
    certfile, keyfile = self_signed(base)
    tokens = base / "tokens.toml"
    tokens.write_text(
        f'[[principals]]\nname = "alice"\ntoken = "{ALICE}"\nnamespaces = ["alice"]\naccess = "write"\n\n'
        f'[[principals]]\nname = "bob"\ntoken = "{BOB}"\nnamespaces = ["bob"]\naccess = "write"\n\n'
        f'[[principals]]\nname = "reader"\ntoken = "{READER}"\naccess = "read"\n',
        encoding="utf-8",
    )
    tokens.chmod(0o600)
    jwks = base / "jwks.json"
    numbers = EC_KEY.public_key().public_numbers()
    jwks.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "kid": "e1",
                        "x": b64(numbers.x.to_bytes(32, "big")),
                        "y": b64(numbers.y.to_bytes(32, "big")),
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    data = base / "data"
    env = server_env(
        data,
        MCP_GEMMA_AUTH_TOKEN=ADMIN,
        MCP_GEMMA_HTTP__OAUTH__ISSUER=ISSUER,
        MCP_GEMMA_HTTP__OAUTH__AUDIENCE=AUDIENCE,
        MCP_GEMMA_HTTP__OAUTH__KEYS_FILE=str(jwks),
        MCP_GEMMA_HTTP__TOKENS_FILE=str(tokens),
        MCP_GEMMA_HTTP__TLS_CERTFILE=str(certfile),
        MCP_GEMMA_HTTP__TLS_KEYFILE=str(keyfile),
    )
    server = SpawnedServer("http", data, env=env)
    yield server, certfile, data
    server.stop()


def https_url(server: SpawnedServer) -> str:
    return f"https://127.0.0.1:{server.port}/mcp"


@asynccontextmanager
async def session(server: SpawnedServer, certfile: Path, token: str) -> AsyncIterator[Client]:
    with anyio.fail_after(90):
        async with Client(BearerTransport(https_url(server), token, certfile)) as client:
            yield client


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_https_with_pinned_certificate(tls_server: tuple[SpawnedServer, Path, Path]) -> None:
    server, certfile, _ = tls_server
    context = ssl.create_default_context(cafile=str(certfile))
    async with httpx.AsyncClient(verify=context, headers={"authorization": f"Bearer {ADMIN}"}) as http:
        health = await http.get(f"https://127.0.0.1:{server.port}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    async with httpx.AsyncClient() as unpinned:  # the system CAs do not know the test certificate
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await unpinned.get(f"https://127.0.0.1:{server.port}/healthz")
    async with session(server, certfile, ADMIN) as client:
        result = await client.call_tool("health_check", {})
    assert result.structured_content is not None and result.structured_content["status"] == "ok"


async def test_namespaces_and_read_only_principals_over_http(
    tls_server: tuple[SpawnedServer, Path, Path],
) -> None:
    server, certfile, data = tls_server
    secret = "alice's launch code is amber-falcon-42"
    async with session(server, certfile, ALICE) as alice:
        stored = await alice.call_tool("store_memory", {"content": secret, "agent_id": "alice"})
        assert not stored.is_error, text_of(stored)
        assert stored.structured_content is not None
        memory_id = stored.structured_content["ids"][0]

    async with session(server, certfile, BOB) as bob:
        read = await bob.call_tool("recall_memory", {"query": "launch code", "agent_id": "alice"})
        assert read.is_error
        assert text_of(read) == (
            "principal 'bob' may not use memory namespace (agent_id) 'alice' in recall_memory; "
            "its namespaces: bob"
        )
        default = await bob.call_tool("recall_memory", {"query": "launch code"})
        assert default.is_error and "namespace (agent_id) 'default'" in text_of(default)
        write = await bob.call_tool("store_memory", {"content": "planted by bob", "agent_id": "alice"})
        assert write.is_error and "'alice' in store_memory" in text_of(write)
        shared = await bob.call_tool(
            "store_memory", {"content": "for all", "agent_id": "bob", "shared": True}
        )
        assert shared.is_error and "may not store shared memories" in text_of(shared)
        clear = await bob.call_tool("clear_memory", {"confirm": True, "agent_id": "alice"})
        assert clear.is_error and "'alice' in clear_memory" in text_of(clear)
        stats = await bob.call_tool("get_memory_stats", {"agent_id": "alice"})
        assert stats.is_error
        with pytest.raises(Exception, match="may not use memory namespace"):
            await bob.read_resource(f"memory://short_term/{memory_id}?agent_id=alice")
        own = await bob.call_tool("store_memory", {"content": "bob's own note", "agent_id": "bob"})
        assert not own.is_error, text_of(own)
        with pytest.raises(Exception, match="may not use memory namespace"):
            await bob.read_resource("memory://short_term?agent_id=bob&agent_id=alice")
        template = ResourceTemplateReference(uri="memory://{tier}/{id}{?agent_id}")
        agents = await bob.complete(template, {"name": "agent_id", "value": ""})
        assert agents.completion.values == ["bob"], f"only its own namespaces are offered: {agents}"
        ids = await bob.complete(
            template, {"name": "id", "value": ""}, {"tier": "short_term", "agent_id": "alice"}
        )
        assert ids.completion.values == []

    async with session(server, certfile, READER) as reader:
        refused = await reader.call_tool("store_memory", {"content": "x", "agent_id": "alice"})
        assert refused.is_error
        assert text_of(refused) == (
            "principal 'reader' has read-only access: store_memory changes data; "
            "use a token whose access is 'write'"
        )
        deleted = await reader.call_tool("delete_document", {"id": "anything"})
        assert deleted.is_error and "read-only access: delete_document" in text_of(deleted)
        agents = await reader.complete(
            ResourceTemplateReference(uri="memory://{tier}{?agent_id}"), {"name": "agent_id", "value": ""}
        )
        assert agents.completion.values == ["alice", "bob", "default"]
        found = await reader.call_tool("recall_memory", {"query": "launch code", "agent_id": "alice"})
        assert not found.is_error, text_of(found)
        assert found.structured_content is not None
        assert [hit["item"]["content"] for hit in found.structured_content["hits"]][:1] == [secret]

    async with session(server, certfile, ALICE) as alice:
        unconfirmed = await alice.call_tool("clear_memory", {"agent_id": "alice"})
        assert unconfirmed.is_error
        still = await alice.call_tool("recall_memory", {"query": "launch code", "agent_id": "alice"})
        assert still.structured_content is not None
        assert [hit["item"]["id"] for hit in still.structured_content["hits"]] == [memory_id], (
            "nothing planted or cleared"
        )

    audit = data / "audit.log"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    text = audit.read_text(encoding="utf-8")
    assert "launch code" not in text and "amber" not in text and ALICE not in text, "no text, no tokens"
    records = [json.loads(line) for line in text.splitlines()]
    mine = [
        (r["principal"], r["action"], r["result"])
        for r in records
        if r["principal"] in ("alice", "bob", "reader")
    ]
    assert ("alice", "store_memory", "ok") in mine
    assert ("alice", "clear_memory", "error:InvalidInputError") in mine, "the domain error's class"
    assert ("bob", "store_memory", "error:AccessDeniedError") in mine
    assert ("bob", "clear_memory", "error:AccessDeniedError") in mine
    assert ("bob", "recall_memory", "error:AccessDeniedError") in mine
    assert ("reader", "delete_document", "error:AccessDeniedError") in mine
    first = next(r for r in records if r["principal"] == "alice" and r["action"] == "store_memory")
    assert first["transport"] == "streamable-http"
    assert first["ids"] == ["agent:alice", f"memory:{memory_id}"]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    data = tmp_path_factory.mktemp("limits") / "data"
    env = server_env(
        data,
        MCP_GEMMA_AUTH_TOKEN=ADMIN,
        MCP_GEMMA_HTTP__LIMITS__SESSION_BURST="3",
        MCP_GEMMA_HTTP__LIMITS__SESSIONS_PER_S="0.001",
        MCP_GEMMA_HTTP__LIMITS__LOCKOUT_FAILURES="3",
        MCP_GEMMA_HTTP__LIMITS__TRUSTED_PROXIES='["127.0.0.1"]',
    )
    server = SpawnedServer("http", data, env=env)
    yield server
    server.stop()


async def test_new_sessions_per_ip_are_limited(limited_server: SpawnedServer) -> None:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(timeout=30) as http:
        opened = [await http.post(limited_server.url, json=INIT, headers=headers) for _ in range(3)]
        assert [r.status_code for r in opened] == [200, 200, 200]
        ids = {r.headers["mcp-session-id"] for r in opened}
        assert len(ids) == 3
        refused = await http.post(limited_server.url, json=INIT, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"].startswith("too many new MCP sessions from 127.0.0.1")
        # A session that exists carries on.
        going = await http.post(
            limited_server.url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={**headers, "mcp-session-id": ids.pop(), "mcp-protocol-version": "2025-06-18"},
        )
        assert going.status_code == 202


def test_websocket_handshake_without_token_is_refused(limited_server: SpawnedServer) -> None:
    request = (
        "GET /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", limited_server.port), timeout=10) as sock:
        sock.sendall(request.encode("ascii"))
        head = sock.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 401"), head


async def test_wrong_tokens_lock_the_ip_out(limited_server: SpawnedServer) -> None:
    base = f"http://127.0.0.1:{limited_server.port}"
    async with httpx.AsyncClient(timeout=30) as http:
        wrong = [
            (await http.get(f"{base}/readyz", headers={"authorization": "Bearer guess"})).status_code
            for _ in range(3)
        ]
        assert wrong == [401, 401, 401]
        # Locked out everywhere, even on the paths that need no token.
        locked = await http.get(f"{base}/healthz", headers={"authorization": f"Bearer {ADMIN}"})
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "300"
    assert locked.json()["title"] == "Locked out"
    assert "locked out 127.0.0.1 for 300 s after 3 wrong bearer tokens within 60 s" in limited_server.output()


async def test_behind_a_trusted_proxy_each_forwarded_client_is_locked_out_alone(
    limited_server: SpawnedServer,
) -> None:
    base = f"http://127.0.0.1:{limited_server.port}"
    # The server trusts 127.0.0.1 as a reverse proxy: X-Forwarded-For names the client.
    guesser = {"authorization": "Bearer guess", "x-forwarded-for": "203.0.113.5"}
    neighbour = {"authorization": f"Bearer {ADMIN}", "x-forwarded-for": "203.0.113.6"}
    async with httpx.AsyncClient(timeout=30) as http:
        wrong = [(await http.get(f"{base}/readyz", headers=guesser)).status_code for _ in range(3)]
        assert wrong == [401, 401, 401]
        locked = await http.get(f"{base}/healthz", headers={**guesser, "authorization": f"Bearer {ADMIN}"})
        other = await http.get(f"{base}/readyz", headers=neighbour)
    assert locked.status_code == 429
    assert locked.json()["title"] == "Locked out"
    assert other.status_code == 200, "another client behind the same proxy is not locked out"
    assert "locked out 203.0.113.5 for 300 s after 3 wrong bearer tokens" in limited_server.output()


async def test_a_session_belongs_to_the_principal_that_opened_it(
    tls_server: tuple[SpawnedServer, Path, Path],
) -> None:
    server, certfile, _ = tls_server
    context = ssl.create_default_context(cafile=str(certfile))
    url = https_url(server)
    async with httpx.AsyncClient(verify=context, timeout=30) as http:
        opened = await http.post(url, json=INIT, headers={**MCP_HEADERS, "authorization": f"Bearer {ALICE}"})
        assert opened.status_code == 200
        session = {
            **MCP_HEADERS,
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        stolen = await http.post(url, json=ping, headers={**session, "authorization": f"Bearer {BOB}"})
        assert stolen.status_code == 404
        assert stolen.json()["detail"] == "session not found; start a new one"
        own = await http.post(url, json=ping, headers={**session, "authorization": f"Bearer {ALICE}"})
        assert own.status_code == 200 and '"id":2' in own.text


async def test_oauth_jwt_principal_over_https(tls_server: tuple[SpawnedServer, Path, Path]) -> None:
    server, certfile, _ = tls_server
    token = sign(
        {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "carol",
            "exp": 4_000_000_000,
            "scope": "mcp:read",
            "mcp_namespaces": ["carol"],
        },
        alg="ES256",
        kid="e1",
        key=EC_KEY,
    )
    async with session(server, certfile, token) as carol:
        own = await carol.call_tool("recall_memory", {"query": "anything", "agent_id": "carol"})
        assert not own.is_error, text_of(own)
        other = await carol.call_tool("recall_memory", {"query": "anything", "agent_id": "alice"})
        assert other.is_error and "principal 'oauth:carol' may not use memory namespace" in text_of(other)
        write = await carol.call_tool("store_memory", {"content": "x", "agent_id": "carol"})
        assert write.is_error and "'oauth:carol' has read-only access" in text_of(write)


async def test_the_rest_api_applies_the_same_rights_and_audit(
    tls_server: tuple[SpawnedServer, Path, Path],
) -> None:
    """The REST routes check the MCP tool they stand for: read-only and namespace-limited principals
    are refused there too, and the writes they make land in the audit log as ``transport: rest``."""
    server, certfile, data = tls_server
    context = ssl.create_default_context(cafile=str(certfile))
    base = f"https://127.0.0.1:{server.port}"

    def as_(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base, verify=context, headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    async with as_(READER) as reader, as_(BOB) as bob, as_(ALICE) as alice, as_(ADMIN) as admin:
        refused = await reader.post("/v1/documents", json={"id": "rest-ro", "text": "read-only text"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == (
            "principal 'reader' has read-only access: ingest_document changes data; "
            "use a token whose access is 'write'"
        )
        made = await admin.post("/v1/documents", json={"id": "rest-doc", "text": "The REST door is blue."})
        assert made.status_code == 200, made.text
        assert (await reader.delete("/v1/documents/rest-doc")).status_code == 403
        assert (await reader.get("/v1/documents/rest-doc")).status_code == 200
        stored = await alice.post("/v1/memory", json={"content": "alice rest note", "agent_id": "alice"})
        assert stored.status_code == 200, stored.text
        recall = await bob.post("/v1/memory/recall", json={"query": "rest note", "agent_id": "alice"})
        assert recall.status_code == 403
        assert "principal 'bob' may not use memory namespace (agent_id) 'alice'" in recall.json()["detail"]
        assert (await bob.get("/v1/memory/stats", params={"agent_id": "alice"})).status_code == 403
        cleared = await bob.delete("/v1/memory", params={"agent_id": "alice", "confirm": "true"})
        assert cleared.status_code == 403
        assert (await bob.post("/v1/research", json={"query": "door", "answer": False})).status_code == 403
        deleted = await admin.delete("/v1/documents/rest-doc")
        assert deleted.status_code == 200, deleted.text
    records = [json.loads(line) for line in (data / "audit.log").read_text(encoding="utf-8").splitlines()]
    rest = [(r["principal"], r["action"], r["result"]) for r in records if r.get("transport") == "rest"]
    assert ("admin", "ingest_document", "ok") in rest
    assert ("alice", "store_memory", "ok") in rest
    assert ("admin", "delete_document", "ok") in rest
    assert ("reader", "ingest_document", "ok") not in rest
