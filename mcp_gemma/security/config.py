"""The security settings: rate limits and lockout of the HTTP transports, and the audit log."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, Field, field_validator


class RateLimitSettings(BaseModel):
    """Token buckets per client IP and per principal, new MCP sessions per IP, lockout on bad tokens.

    The defaults leave a normal client (and ``benches/bench_load.py``'s 50 sessions at once) alone
    and stop floods: a request over a limit gets ``429`` with ``Retry-After``.
    """

    enabled: bool = Field(True, description="Apply the limits below (off: only for trusted benchmarks).")
    ip_requests_per_s: float = Field(200.0, gt=0, description="Requests per second a client IP may sustain.")
    ip_burst: int = Field(1000, ge=1, description="Requests a client IP may send at once.")
    principal_requests_per_s: float = Field(
        400.0, gt=0, description="Requests per second one principal (token) may sustain, from any IP."
    )
    principal_burst: int = Field(2000, ge=1, description="Requests one principal may send at once.")
    sessions_per_s: float = Field(
        2.0, gt=0, description="New MCP sessions per second a client IP may sustain."
    )
    session_burst: int = Field(100, ge=1, description="New MCP sessions a client IP may open at once.")
    lockout_failures: int = Field(
        10, ge=1, description="Wrong bearer tokens from one IP within lockout_window_s that lock it out."
    )
    lockout_window_s: float = Field(60.0, gt=0, description="Window in which wrong tokens are counted.")
    lockout_s: float = Field(
        300.0, gt=0, description="How long a locked-out IP gets 429 on every request, right token or not."
    )
    max_tracked_clients: int = Field(
        65536, ge=16, description="Client IPs and principals remembered at most (least recent forgotten)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Reverse proxies (addresses or CIDR networks, e.g. '10.0.0.0/8') whose "
        "X-Forwarded-For header names the client: a request from one of them is limited, locked out "
        "and logged by the rightmost forwarded address that is not itself a trusted proxy. Empty: "
        "the header is ignored (anyone could forge it).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"http.limits.trusted_proxies: {item!r} is not an IP address or CIDR network "
                    "(e.g. '127.0.0.1' or '10.0.0.0/8')"
                ) from None
        return [item.strip() for item in value]


class AuditSettings(BaseModel):
    """Where and how much of the audit trail is kept."""

    enabled: bool = Field(True, description="Write audit.log in the data directory.")
    max_bytes: int = Field(
        10 * 1024 * 1024, ge=4096, description="Size at which audit.log rotates to audit.log.1."
    )
    backups: int = Field(5, ge=0, le=100, description="Rotated files kept (audit.log.1 … .N).")


class OAuthSettings(BaseModel):
    """JWT access tokens from an OAuth 2.1 authorization server (off unless ``issuer`` is set)."""

    issuer: str | None = Field(None, description="Expected 'iss' claim; setting it turns JWT checking on.")
    audience: str | None = Field(None, description="Expected 'aud' claim (this server's resource URI).")
    keys_file: Path | None = Field(
        None, description="The issuer's public keys: a JWKS JSON file, or a PEM file of public keys."
    )
    write_scope: str = Field("mcp:write", description="Scope that gives write access (else read-only).")
    namespaces_claim: str = Field(
        "mcp_namespaces", description="Claim listing the memory namespaces (absent or '*' = all)."
    )
    leeway_s: float = Field(60.0, ge=0, le=600, description="Clock skew allowed on exp and nbf.")
