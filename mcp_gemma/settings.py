"""One settings object: defaults < TOML config file < environment < CLI flags.

Environment variables use the prefix ``MCP_GEMMA_`` and ``__`` for nesting
(``MCP_GEMMA_GEMMA__DEVICE=cuda``), in any case; a setting that holds a list, a table or a
group of settings takes JSON (``MCP_GEMMA_ALLOWED_ROOTS='["/data"]'``), and nested names are
merged into it. ``REDIS_URL`` and ``HF_TOKEN`` are accepted as well. The sources are merged
table by table, so an environment variable changes one key of a TOML table and keeps the rest.
There is no module-level instance: call :func:`load_settings`.

The loader is ours rather than ``pydantic-settings``' (same rules for everything above): that
package's import, with its cloud and CLI sources, cost more start-up time than all of ours.
"""

from __future__ import annotations

import ipaddress
import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mcp_gemma.agent.config import AgentSettings
from mcp_gemma.chat.config import ChatSettings
from mcp_gemma.embeddings.config import EmbeddingSettings
from mcp_gemma.errors import ConfigError
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.memory.config import MemorySettings
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.security.config import AuditSettings, OAuthSettings, RateLimitSettings

Transport = Literal["stdio", "sse", "streamable-http"]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def default_data_dir() -> Path:
    """The per-user data directory (XDG on Linux): ``~/.local/share/mcp-gemma``."""
    import platformdirs  # only when no data_dir is set: it is not needed to start otherwise

    return Path(platformdirs.user_data_dir("mcp-gemma", appauthor=False))


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedRedisSettings(BaseModel):
    """The Redis-compatible server started in the data directory when no ``redis_url`` is set."""

    appendfsync: Literal["always", "everysec", "no"] = Field(
        "everysec",
        description="AOF fsync policy: 'always' loses no acknowledged write on power loss; "
        "'everysec' at most one second (kill -9 of the server alone loses nothing either way).",
    )
    start_timeout_s: float = Field(10.0, gt=0, le=120, description="How long to wait for it to answer PING.")
    maxmemory_mb: int = Field(
        0,
        ge=0,
        description="Memory cap in MiB (0 = none). When it is reached, writes are refused with a clear "
        "error under the default policy (noeviction): nothing stored is dropped silently.",
    )
    maxmemory_policy: Literal[
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] = Field(
        "noeviction",
        description="What the embedded server does at maxmemory_mb: 'noeviction' refuses writes; the "
        "others drop keys (documents and memories could vanish), so keep the default for a knowledge base.",
    )
    watch_interval_s: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="How often the server checks that the embedded Redis still answers; when it is gone "
        "it is restarted (retries back off up to 30 s) and the in-process indexes reload from it.",
    )


class HttpSettings(BaseModel):
    """Network transports (SSE and Streamable HTTP)."""

    host: str = Field("127.0.0.1", description="Bind address. Anything beyond loopback requires auth_token.")
    port: int = Field(8765, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    path: str = Field("/mcp", pattern=r"^/[A-Za-z0-9._~/-]*$", description="Streamable HTTP endpoint path.")
    sse_path: str = Field("/sse", pattern=r"^/[A-Za-z0-9._~/-]*$", description="SSE stream path.")
    message_path: str = Field(
        "/messages/", pattern=r"^/[A-Za-z0-9._~/-]*/$", description="SSE message POST path (ends with /)."
    )
    auth_token: SecretStr | None = Field(
        None,
        description="Bearer token required on HTTP requests (env MCP_GEMMA_AUTH_TOKEN). "
        "Mandatory when host is not loopback.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted (DNS-rebinding protection), e.g. 'mcp.example:*'.",
    )
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    tokens_file: Path | None = Field(
        None,
        description="TOML or JSON file of principals: token (or token_sha256), name, memory namespaces and "
        "access (read or write); see docs/SECURITY.md. Counts as auth for a non-loopback host.",
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS; needs tls_keyfile too."
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile.")
    # The nested settings' factories are lambdas, not the classes: pydantic reads a factory's
    # signature, and a model class builds its own on first use (~1 ms each, 12 of them at start-up).
    limits: RateLimitSettings = Field(default_factory=lambda: RateLimitSettings())
    oauth: OAuthSettings = Field(default_factory=lambda: OAuthSettings())

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both http.tls_certfile and http.tls_keyfile, or neither")
        for name, path in (
            ("tls_certfile", self.tls_certfile),
            ("tls_keyfile", self.tls_keyfile),
            ("tokens_file", self.tokens_file),
            ("oauth.keys_file", self.oauth.keys_file),
        ):
            if path is not None and not path.expanduser().is_file():
                raise ValueError(f"http.{name} {path} does not exist or is not a file")
        if self.oauth.issuer is not None and (self.oauth.audience is None or self.oauth.keys_file is None):
            raise ValueError("http.oauth.issuer needs http.oauth.audience and http.oauth.keys_file too")
        return self

    @property
    def has_auth(self) -> bool:
        """Whether HTTP requests must carry a bearer token."""
        return self.auth_token is not None or self.tokens_file is not None or self.oauth.issuer is not None

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self.tls_certfile is not None else "http"

    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins a browser may call the REST API from (CORS), e.g. 'https://app.example'. "
        "Empty = no CORS headers; these origins also pass the Origin check.",
    )
    agent_runs_kept: int = Field(
        100, ge=1, le=10_000, description="REST agent runs remembered; the oldest finished run goes first."
    )
    agent_runs_active: int = Field(
        4, ge=1, le=256, description="REST agent runs at once; more are refused (503) until one ends."
    )

    def trusted_hosts(self) -> list[str]:
        """Host header patterns accepted (``host:*`` = any port): loopback, ``allowed_hosts`` and the
        bind address when it is not loopback (DNS-rebinding protection of MCP and REST alike)."""
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *self.allowed_hosts]
        if not is_loopback(self.host):
            hosts.append(f"{self.host}:*")
        return hosts

    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins accepted besides the server's own, e.g. 'https://console.example' "
        "(checked on WebSocket handshakes, which browsers do not limit to the same origin).",
    )


PLUGIN_MODULE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


class ServerSettings(BaseModel):
    """The MCP server itself: what it adds to its own tools."""

    plugins: list[Annotated[str, Field(max_length=200, pattern=PLUGIN_MODULE)]] = Field(
        default_factory=list,
        max_length=32,
        description="Importable modules whose register(server, settings) adds tools, resources, prompts "
        "and completions at start-up, behind the same access rules, audit, limits and readiness as ours "
        "(env MCP_GEMMA_SERVER__PLUGINS='[\"pkg.mod\"]'); see README, Extending.",
    )


class Settings(BaseModel):
    """Every setting of mcp-gemma, validated once at start (build it with :func:`load_settings`)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded Redis, model caches and logs live.",
    )
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("redis_url", "MCP_GEMMA_REDIS_URL", "REDIS_URL"),
        description="redis://, rediss:// or unix:// URL of an external server; unset = embedded server.",
    )
    redis_timeout_s: float = Field(5.0, gt=0, le=300, description="Connect and command timeout for Redis.")
    redis_min_replicas_ack: int = Field(
        0,
        ge=0,
        le=16,
        description="Replicas that must confirm a write (WAIT) before a tool reports it done; 0 = the "
        "master's acknowledgement is enough. Use 1 on a replicated server or cluster so an acknowledged "
        "write survives the master's loss.",
    )
    redis_wait_timeout_ms: int = Field(
        2_000, ge=1, le=60_000, description="How long a write waits for redis_min_replicas_ack replicas."
    )
    request_state_key: SecretStr | None = Field(
        None,
        min_length=32,
        validation_alias=AliasChoices("request_state_key", "MCP_GEMMA_REQUEST_STATE_KEY"),
        description="Secret (32+ characters) that seals the state a paused run_agent resumes from, shared "
        "by every replica; unset = one generated once and kept in Redis, so any replica over the same "
        "Redis and namespace can resume a run another one started.",
    )
    redis_failover_wait_s: float = Field(
        20.0,
        ge=0,
        le=600,
        description="On Redis Cluster, how long a call keeps retrying while slots move or a failed "
        "master's replica takes over, before it reports the cluster unavailable.",
    )
    namespace: str = Field(
        "mcpg",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key, so several deployments can share one Redis.",
    )
    embedded_redis: EmbeddedRedisSettings = Field(default_factory=lambda: EmbeddedRedisSettings())
    transport: Transport = Field("stdio", description="stdio, sse or streamable-http.")
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")
    list_page_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="Items per page of tools/list, resources/list, prompts/list (cursor paging).",
    )
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders that file ingestion and the agent's file tools may read. Empty = none.",
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("hf_token", "MCP_GEMMA_HF_TOKEN", "HF_TOKEN"),
        description="Hugging Face token for gated Hub models.",
    )
    gemma: GemmaSettings = Field(default_factory=lambda: GemmaSettings())
    embedding: EmbeddingSettings = Field(default_factory=lambda: EmbeddingSettings())
    rag: RagSettings = Field(default_factory=lambda: RagSettings())
    memory: MemorySettings = Field(default_factory=lambda: MemorySettings())
    agent: AgentSettings = Field(default_factory=lambda: AgentSettings())
    audit: AuditSettings = Field(default_factory=lambda: AuditSettings())
    chat: ChatSettings = Field(default_factory=lambda: ChatSettings())

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        return [p.expanduser().resolve() for p in value]

    @model_validator(mode="after")
    def _auth_beyond_loopback(self) -> Settings:
        if self.transport != "stdio" and not is_loopback(self.http.host) and not self.http.has_auth:
            raise ValueError(
                f"http.host={self.http.host!r} accepts connections from other machines: set "
                "MCP_GEMMA_AUTH_TOKEN (or http.auth_token, or http.tokens_file) or bind to 127.0.0.1"
            )
        return self

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-ready data, secrets masked."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["redis_url"] = mask_url(self.redis_url.get_secret_value()) if self.redis_url else None
        return data


def mask_url(url: str) -> str:
    """Hide the password of a ``redis://user:pass@host`` URL."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:****@{host}"


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid settings ({origin}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


ENV_PREFIX = "MCP_GEMMA_"
ENV_NESTED = "__"
_CONTAINERS = (list, dict, set, frozenset, tuple)


def _is_complex(annotation: Any) -> bool:
    """Whether an environment value for this type is JSON: a model, a container, or a union with one."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_complex(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_complex(a) for a in get_args(annotation) if a is not type(None))
    if origin in _CONTAINERS or annotation in _CONTAINERS:
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _env_names(name: str, info: Any) -> list[str]:
    """A top-level field's variable names, lower case: its aliases, or the prefixed name."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice.lower() for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias.lower()]
    return [(ENV_PREFIX + name).lower()]


def _child(annotation: Any, key: str) -> Any:
    """The type found under ``key`` in a model or a dict type, or None when there is none."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _child(get_args(annotation)[0], key)
    if origin is dict:
        return get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(key)
        return None if field is None else field.annotation
    return None


def _decode(var: str, annotation: Any, raw: str) -> Any:
    if not raw or not _is_complex(annotation):
        return raw  # an empty value reaches the model, which says what the setting expects
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        example = '["a", "b"]' if get_origin(annotation) in (list, set, frozenset, tuple) else '{"key": 1}'
        raise ConfigError(
            f"invalid settings (environment): {var} takes JSON, e.g. {var}='{example}' ({exc.msg})"
        ) from exc


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, table by table (a non-table value replaces whatever was there)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings found in ``environ`` (names in any case), as the nested data the model validates.

    A variable names a field (``MCP_GEMMA_NAMESPACE``) or, with ``__``, a key inside one
    (``MCP_GEMMA_HTTP__LIMITS__ENABLED``, ``MCP_GEMMA_MEMORY__TIERS__WORKING__TTL_S``); the nested
    names win over the field's own JSON value. Variables that name no setting are left alone.
    """
    env = {key.lower(): (key, value) for key, value in environ.items()}
    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        names = _env_names(name, info)
        found = next((n for n in names if n in env), None)
        value: Any = None
        if found is not None:
            var, raw = env[found]
            value = _decode(var, info.annotation, raw)
        prefixes = [n + ENV_NESTED for n in names]
        nested: dict[str, Any] = {}
        for key in sorted(env):
            prefix = next((p for p in prefixes if key.startswith(p) and len(key) > len(p)), None)
            if prefix is None:
                continue
            var, raw = env[key]
            *path, last = key[len(prefix) :].split(ENV_NESTED)
            annotation: Any = info.annotation
            node = nested
            for part in path:
                annotation = _child(annotation, part)
                child = node.setdefault(part, {})
                if not isinstance(child, dict):  # a shorter name gave this key a plain value
                    raise ConfigError(f"invalid settings (environment): {var} conflicts with a shorter name")
                node = child
            target = _child(annotation, last)
            node[last] = raw if target is None else _decode(var, target, raw)
        if nested:
            value = _deep_merge(value, nested) if isinstance(value, dict) else nested
        if found is not None or nested:
            values[name] = value
    return values


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; raise :class:`ConfigError` naming the bad setting.

    ``config_file`` (or ``MCP_GEMMA_CONFIG``) is a TOML file whose keys mirror the settings;
    ``overrides`` are CLI flags and win over everything else (``None`` values are ignored).
    """
    config_file = config_file or (
        Path(os.environ["MCP_GEMMA_CONFIG"]) if os.environ.get("MCP_GEMMA_CONFIG") else None
    )
    data: dict[str, Any] = {}
    origin = "environment and defaults"
    if config_file is not None:
        path = config_file.expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        import tomllib  # only with a config file

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        origin = f"{path}, environment and defaults"
    data = _deep_merge(data, env_values(os.environ))
    clean = {k: v for k, v in overrides.items() if v is not None}
    token = os.environ.get("MCP_GEMMA_AUTH_TOKEN")
    if token and "auth_token" not in (clean.get("http") or {}):
        # The short, well-known name for the nested http.auth_token (like REDIS_URL for redis_url).
        clean["http"] = {**(clean.get("http") or {}), "auth_token": token}
    try:
        return Settings.model_validate(_deep_merge(data, clean))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from exc
