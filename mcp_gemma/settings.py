"""One settings object: defaults < TOML config file < environment < CLI flags.

Environment variables use the prefix ``MCP_GEMMA_`` and ``__`` for nesting
(``MCP_GEMMA_GEMMA__DEVICE=cuda``); ``REDIS_URL`` and ``HF_TOKEN`` are accepted as well.
There is no module-level instance: call :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
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


class Settings(BaseSettings):
    """Every setting of mcp-gemma, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="MCP_GEMMA_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

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


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; raise :class:`ConfigError` naming the bad setting.

    ``config_file`` (or ``MCP_GEMMA_CONFIG``) is a TOML file whose keys mirror the settings;
    ``overrides`` are CLI flags and win over everything else (``None`` values are ignored).
    """
    config_file = config_file or (
        Path(os.environ["MCP_GEMMA_CONFIG"]) if os.environ.get("MCP_GEMMA_CONFIG") else None
    )
    cls: type[Settings] = Settings
    origin = "environment and defaults"
    if config_file is not None:
        path = config_file.expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        import tomllib  # only with a config file

        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        cls = type(
            "FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
        )
        origin = f"{path}, environment and defaults"
    clean = {k: v for k, v in overrides.items() if v is not None}
    token = os.environ.get("MCP_GEMMA_AUTH_TOKEN")
    if token and "auth_token" not in (clean.get("http") or {}):
        # The short, well-known name for the nested http.auth_token (like REDIS_URL for redis_url).
        clean["http"] = {**(clean.get("http") or {}), "auth_token": token}
    try:
        return cls(**clean)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from exc
