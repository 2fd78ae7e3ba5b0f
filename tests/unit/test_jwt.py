"""OAuth JWT access tokens: keys made here with ``cryptography``, tokens signed here, checked offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mcp_gemma.api.app import create_api
from mcp_gemma.errors import ConfigError
from mcp_gemma.security.config import OAuthSettings, RateLimitSettings
from mcp_gemma.security.jwt import JwtVerifier, load_keys
from mcp_gemma.security.principals import Principal, TokenRegistry
from mcp_gemma.server.guard import GuardedApp
from mcp_gemma.settings import load_settings
from mcp_gemma.state import SharedState

NOW = 1_800_000_000.0
ISSUER = "https://auth.example"
AUDIENCE = "https://mcp.example/mcp"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = "r1", key: Any = RSA_KEY) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
    if alg == "RS256":
        signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = b""
    return f"{signed.decode()}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 300, "scope": "mcp:write", **extra}


@pytest.fixture
def jwks(tmp_path: Path) -> Path:
    rsa_numbers = RSA_KEY.public_key().public_numbers()
    ec_numbers = EC_KEY.public_key().public_numbers()
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "RSA",
                        "kid": "r1",
                        "n": b64(rsa_numbers.n.to_bytes(256, "big")),
                        "e": b64(rsa_numbers.e.to_bytes(3, "big")),
                    },
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "kid": "e1",
                        "x": b64(ec_numbers.x.to_bytes(32, "big")),
                        "y": b64(ec_numbers.y.to_bytes(32, "big")),
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    return path


def verifier(keys_file: Path) -> JwtVerifier:
    settings = OAuthSettings(issuer=ISSUER, audience=AUDIENCE, keys_file=keys_file)
    return JwtVerifier(settings, load_keys(keys_file), clock=lambda: NOW)


def test_valid_tokens_give_their_principal(jwks: Path) -> None:
    check = verifier(jwks)
    assert check.verify(sign(claims(mcp_namespaces=["alice"])).encode()) == Principal(
        "oauth:alice", "write", frozenset({"alice"})
    )
    assert check.verify(sign(claims(scope="mcp:read", aud=["x", AUDIENCE])).encode()) == Principal(
        "oauth:alice", "read", None
    )
    es = sign(claims(), alg="ES256", kid="e1", key=EC_KEY)
    assert check.verify(es.encode()) == Principal("oauth:alice", "write", None)


@pytest.mark.parametrize(
    "token",
    [
        sign(claims(exp=NOW - 61)),  # expired past the leeway
        sign(claims(nbf=NOW + 61)),  # not yet valid
        sign(claims(aud="https://other.example")),
        sign(claims(iss="https://evil.example")),
        sign({k: v for k, v in claims().items() if k != "exp"}),  # exp is required
        sign(claims(sub="")),
        sign(claims(mcp_namespaces=["bad ns"])),
        sign(claims(mcp_namespaces=[])),
        sign(claims(), alg="none"),
        sign(claims(), kid="unknown"),
        sign(claims(), alg="ES256", kid="r1", key=EC_KEY),  # an EC signature under the RSA key's kid
        sign(claims(), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),  # another key
        sign(claims())[:-4] + "AAAA",  # tampered signature
        "not.a.jwt",
        "a" * 9000,
    ],
)
def test_invalid_tokens_give_none(jwks: Path, token: str) -> None:
    assert verifier(jwks).verify(token.encode()) is None


def test_tampered_claims_fail(jwks: Path) -> None:
    head, _body, sig = sign(claims(scope="mcp:read")).split(".")
    forged = f"{head}.{b64(json.dumps(claims()).encode())}.{sig}"
    assert verifier(jwks).verify(forged.encode()) is None


def test_pem_key_and_config_errors(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert verifier(pem).verify(sign(claims(), kid=None).encode()) == Principal("oauth:alice", "write", None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="no RSA or P-256 key in it"):
        load_keys(bad)
    with pytest.raises(ConfigError, match=r"http\.oauth\.issuer needs http\.oauth\.audience"):
        load_settings(data_dir=tmp_path, http={"oauth": {"issuer": ISSUER}})


@pytest.mark.anyio
async def test_guard_accepts_jwts_and_counts_bad_ones_towards_lockout(jwks: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    app = GuardedApp(
        create_api(settings, SharedState(settings)),
        registry=TokenRegistry(),
        verifier=JwtVerifier(
            OAuthSettings(issuer=ISSUER, audience=AUDIENCE, keys_file=jwks), load_keys(jwks)
        ),
        limits=RateLimitSettings(lockout_failures=2),
    )
    good = sign(claims(exp=4_000_000_000))
    transport = httpx.ASGITransport(app=app, client=("10.2.2.2", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await http.get("/healthz", headers={"authorization": f"Bearer {good}"})).status_code == 200
        expired = sign(claims(exp=1_000_000_000))  # 2001
        statuses = [
            (await http.get("/healthz", headers={"authorization": f"Bearer {expired}"})).status_code
            for _ in range(3)
        ]
    assert statuses == [401, 401, 429]
