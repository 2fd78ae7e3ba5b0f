"""Which WebSocket handshakes ``/v1/chat`` accepts: Host (DNS rebinding) and Origin (cross-site) checks."""

from __future__ import annotations

import pytest

from mcp_gemma.api.chat import handshake_refusal
from mcp_gemma.settings import load_settings

DEFAULT = load_settings()
WIDE = load_settings(
    http={
        "host": "0.0.0.0",
        "auth_token": "t0ken",
        "allowed_hosts": ["chat.example:*", "exact.example:8443"],
        "allowed_origins": ["https://console.example/"],
    }
)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8765", None),  # not a browser
        ("localhost:8765", "http://localhost:8765"),
        ("[::1]:8765", "http://[::1]:8765"),
        ("127.0.0.1:8765", "http://127.0.0.1:8765/"),
    ],
)
def test_loopback_and_same_origin_are_accepted(host: str, origin: str | None) -> None:
    assert handshake_refusal(host, origin, DEFAULT) is None


@pytest.mark.parametrize(
    ("host", "origin", "why"),
    [
        (None, None, "Host None is not one this server answers to"),
        ("evil.example:8765", None, "Host 'evil.example:8765' is not one"),
        ("evil.example:8765", "http://evil.example:8765", "Host 'evil.example:8765' is not one"),
        ("127.0.0.1:8765", "http://evil.example", "Origin 'http://evil.example' is not allowed"),
        ("127.0.0.1:8765", "null", "Origin 'null' is not allowed"),
        ("127.0.0.1:8765", "http://127.0.0.1:9999", "Origin 'http://127.0.0.1:9999' is not allowed"),
        ("127.0.0.1:8765", "file://127.0.0.1:8765", "Origin 'file://127.0.0.1:8765' is not allowed"),
    ],
)
def test_other_hosts_and_origins_are_refused(host: str | None, origin: str | None, why: str) -> None:
    refusal = handshake_refusal(host, origin, DEFAULT)
    assert refusal is not None and refusal.startswith(why), refusal


def test_allow_lists_extend_the_hosts_and_origins() -> None:
    assert handshake_refusal("chat.example:443", "https://chat.example:443", WIDE) is None
    assert handshake_refusal("exact.example:8443", None, WIDE) is None
    assert handshake_refusal("127.0.0.1:8765", "https://console.example", WIDE) is None
    assert handshake_refusal("exact.example:80", None, WIDE) is not None
    assert handshake_refusal("chat.example:443", "https://other.example", WIDE) is not None
