"""OAuth 2.1 access tokens as JWTs: the server checks them as a resource server, offline.

An authorization server (Keycloak, Auth0, …) signs the tokens; the server holds its public keys (a
JWKS file or PEM public keys, never fetched at run time) and checks every token itself: the
signature (RS256 or ES256 only; ``none`` and HMAC are refused), ``iss``, ``aud``, ``exp`` (required)
and ``nbf``. The principal is the ``sub`` claim; ``scope`` containing the write scope gives write
access, else read; a namespaces claim (a list, or ``"*"``) limits the memory namespaces.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_gemma.errors import ConfigError
from mcp_gemma.security.config import OAuthSettings
from mcp_gemma.security.principals import NAMESPACE_PATTERN, Principal

MAX_TOKEN_CHARS = 8192
ALGORITHMS = ("RS256", "ES256")


class JwtVerifier:
    """Checks JWT access tokens against fixed keys and claims; returns the principal or None."""

    def __init__(
        self, settings: OAuthSettings, keys: dict[str | None, Any], clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: OAuthSettings) -> JwtVerifier | None:
        """The verifier the settings describe, or None when OAuth is off."""
        if settings.issuer is None:
            return None
        if settings.audience is None or settings.keys_file is None:
            raise ConfigError("http.oauth.issuer needs http.oauth.audience and http.oauth.keys_file too")
        return cls(settings, load_keys(settings.keys_file))

    def verify(self, token: bytes) -> Principal | None:
        """The principal of a valid token; None for anything else (never raises on bad input)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(b".") != 2:
            return None
        try:
            head_b64, body_b64, sig_b64 = token.split(b".")
            header = json.loads(_b64(head_b64))
            claims = json.loads(_b64(body_b64))
            signature = _b64(sig_b64)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return None
        key = self.keys.get(header.get("kid")) or (self.keys.get(None) if len(self.keys) == 1 else None)
        if key is None or not _signature_ok(alg, key, head_b64 + b"." + body_b64, signature):
            return None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal | None:
        s, now = self.settings, self.clock()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if (
            claims.get("iss") != s.issuer
            or s.audience not in audiences
            or not isinstance(exp, int | float)
            or isinstance(exp, bool)
            or now > exp + s.leeway_s
            or not isinstance(nbf, int | float)
            or now + s.leeway_s < nbf
        ):
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= 128:
            return None
        scopes = str(claims.get("scope", "")).split()
        raw = claims.get(s.namespaces_claim, "*")
        namespaces: frozenset[str] | None
        if raw == "*" or (isinstance(raw, list) and "*" in raw):
            namespaces = None
        elif (
            isinstance(raw, list)
            and raw
            and all(isinstance(v, str) and NAMESPACE_PATTERN.match(v) for v in raw)
        ):
            namespaces = frozenset(raw)
        else:
            return None
        return Principal(f"oauth:{subject}", "write" if s.write_scope in scopes else "read", namespaces)


def _b64(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _signature_ok(alg: str, key: Any, signed: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            return True
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def load_keys(path: Path) -> dict[str | None, Any]:
    """Public keys by ``kid`` from a JWKS file (RSA and P-256 keys), or one PEM public key (kid None)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"http.oauth.keys_file {path}: cannot read it ({exc.strerror or exc})") from exc
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = load_pem_public_key(raw)
        except ValueError as exc:
            raise ConfigError(f"http.oauth.keys_file {path}: not a PEM public key ({exc})") from exc
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ConfigError(f"http.oauth.keys_file {path}: only RSA and EC P-256 keys are supported")
        return {None: key}
    try:
        jwks = json.loads(raw)
        keys: dict[str | None, Any] = {}
        for jwk in jwks["keys"]:
            kid = jwk.get("kid")
            if jwk.get("kty") == "RSA":
                keys[kid] = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
            elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                keys[kid] = ec.EllipticCurvePublicNumbers(
                    _int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()
                ).public_key()
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"http.oauth.keys_file {path}: not a JWKS with RSA or P-256 keys ({exc})") from exc
    if not keys:
        raise ConfigError(f"http.oauth.keys_file {path}: no RSA or P-256 key in it")
    return keys


def _int(value: str) -> int:
    return int.from_bytes(_b64(value.encode()), "big")
