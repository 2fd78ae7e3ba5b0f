"""Principals: who a bearer token stands for, which memory namespaces it may use, read or write.

Tokens come from ``http.auth_token`` (one read-write principal, ``"admin"``, with every namespace)
and from ``http.tokens_file`` (TOML or JSON)::

    [[principals]]
    name = "alice"
    token_sha256 = "9f86d0…"          # or token = "…" (at least 16 characters)
    namespaces = ["alice", "team-a"]  # memory namespaces (agent_id) and document collections; ["*"] = all
    access = "write"                  # or "read"

Only the SHA-256 of each token is kept in memory. stdio is one user: :data:`LOCAL` has every right.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcp_gemma.errors import AccessDeniedError, ConfigError

logger = logging.getLogger(__name__)

Access = Literal["read", "write"]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_TOKEN_CHARS = 16
MAX_PRINCIPALS = 10_000
SCOPE_KEY = "principal"
"""Key of the :class:`Principal` in an ASGI scope's ``state`` (``request.state.principal``)."""


@dataclass(frozen=True)
class Principal:
    """One caller: a name for logs and the audit, its memory namespaces and its access."""

    name: str
    access: Access = "write"
    namespaces: frozenset[str] | None = None
    """Memory namespaces (agent ids) it may use; None = every namespace."""

    @property
    def can_write(self) -> bool:
        """Whether it may call tools and routes that change data."""
        return self.access == "write"

    @property
    def limited(self) -> bool:
        """Whether it is restricted to some namespaces."""
        return self.namespaces is not None

    def allows(self, namespace: str) -> bool:
        """Whether it may read and (with write access) change the memories of ``namespace``."""
        return self.namespaces is None or namespace in self.namespaces

    def require_write(self, action: str) -> None:
        """Raise :class:`AccessDeniedError` unless it may change data."""
        if not self.can_write:
            raise AccessDeniedError(
                f"principal {self.name!r} has read-only access: {action} changes data; "
                "use a token whose access is 'write'"
            )

    def require_namespace(self, namespace: str, action: str) -> None:
        """Raise :class:`AccessDeniedError` unless ``namespace`` is one of its namespaces."""
        if not self.allows(namespace):
            allowed = ", ".join(sorted(self.namespaces or ()))
            raise AccessDeniedError(
                f"principal {self.name!r} may not use memory namespace (agent_id) {namespace!r} "
                f"in {action}; its namespaces: {allowed}"
            )

    def require_collection(self, collection: str, action: str) -> None:
        """Raise :class:`AccessDeniedError` unless document collection ``collection`` is one of its
        namespaces (a principal's namespaces govern the collections of the same names)."""
        if not self.allows(collection):
            allowed = ", ".join(sorted(self.namespaces or ()))
            raise AccessDeniedError(
                f"principal {self.name!r} may not use document collection {collection!r} (the "
                f"'collection' argument) in {action}; its namespaces: {allowed}"
            )


LOCAL = Principal("local")
"""The one user of stdio and in-process sessions: every right."""
ANONYMOUS = Principal("anonymous")
"""The caller of an HTTP server without tokens (loopback only, the settings insist): every right."""


def principal_of_scope(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the HTTP guard attached to an ASGI scope (``request.scope``), if any."""
    state = scope.get("state")
    found = state.get(SCOPE_KEY) if isinstance(state, Mapping) else None
    return found if isinstance(found, Principal) else None


def token_digest(token: bytes) -> bytes:
    """The SHA-256 a token is known by."""
    return hashlib.sha256(token).digest()


class TokenRegistry:
    """Bearer token (by its SHA-256) → :class:`Principal`."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]] = ()) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for digest, principal in entries:
            if digest in self._by_digest:
                raise ConfigError(f"two principals share one token ({principal.name!r}); give each its own")
            self._by_digest[digest] = principal

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: bytes) -> Principal | None:
        """The principal of ``token``, or None. Compares digests, so the time does not leak the token."""
        return self._by_digest.get(token_digest(token))

    @classmethod
    def build(cls, auth_token: str | None, tokens_file: Path | None) -> TokenRegistry:
        """The registry of the settings' ``http.auth_token`` and ``http.tokens_file``."""
        entries: list[tuple[bytes, Principal]] = []
        if auth_token:
            entries.append((token_digest(auth_token.encode()), Principal("admin")))
        if tokens_file is not None:
            entries.extend(load_tokens_file(tokens_file))
        return cls(entries)


def load_tokens_file(path: Path) -> list[tuple[bytes, Principal]]:
    """Read a TOML or JSON tokens file; :class:`ConfigError` naming the file and entry when it is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"http.tokens_file {path}: cannot read it ({exc.strerror or exc})") from exc
    if path.stat().st_mode & 0o077:
        logger.warning("http.tokens_file %s is readable by other users; chmod 600 it", path)
    import tomllib  # only with a tokens file

    try:
        text = raw.decode("utf-8")
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"http.tokens_file {path} is not valid {kind}: {exc}") from exc
    items = data.get("principals") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f"http.tokens_file {path}: expected a list 'principals' of entries")
    if len(items) > MAX_PRINCIPALS:
        raise ConfigError(f"http.tokens_file {path}: more than {MAX_PRINCIPALS} principals")
    return [_entry(path, i, item) for i, item in enumerate(items)]


def _entry(path: Path, index: int, item: Any) -> tuple[bytes, Principal]:
    where = f"http.tokens_file {path}: principals[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a table/object")
    unknown = sorted(set(item) - {"name", "principal", "token", "token_sha256", "namespaces", "access"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = item.get("name", item.get("principal"))
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-64 letters, digits or _ . @ -")
    access = item.get("access", "read")
    if access not in ("read", "write"):
        raise ConfigError(f'{where} ({name}): \'access\' must be "read" or "write"')
    namespaces = _namespaces(where, name, item.get("namespaces", ["*"]))
    token, hashed = item.get("token"), item.get("token_sha256")
    if (token is None) == (hashed is None):
        raise ConfigError(f"{where} ({name}): give exactly one of 'token' and 'token_sha256'")
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where} ({name}): 'token' must be a string of at least {MIN_TOKEN_CHARS} characters"
            )
        digest = token_digest(token.encode())
    else:
        if not isinstance(hashed, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", hashed):
            raise ConfigError(f"{where} ({name}): 'token_sha256' must be 64 hex digits")
        digest = bytes.fromhex(hashed)
    return digest, Principal(name, access, namespaces)


def _namespaces(where: str, name: str, value: Any) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} ({name}): 'namespaces' must be a list of strings")
    if "*" in value:
        return None
    bad = [v for v in value if not NAMESPACE_PATTERN.match(v)]
    if bad:
        raise ConfigError(f"{where} ({name}): namespace {bad[0]!r} is not 1-64 letters, digits or _ . -")
    if not value:
        raise ConfigError(f"{where} ({name}): 'namespaces' is empty; list some, or \"*\" for all")
    return frozenset(value)
