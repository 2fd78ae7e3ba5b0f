"""Streamable HTTP: a request whose id is not a string or an integer gets 400 and -32600.

The SDK took such a message for a notification (``202``) and never answered it; the client waited
forever. stdio has the same check (``test_stdio_malformed.py``).
"""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import SpawnedServer
from .test_transports import INIT

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
ERROR = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32600, "message": "Invalid request: 'id' must be a string or an integer"},
}


@pytest.mark.parametrize("bad_id", [1.5, 2.0, True, None, [1], {"a": 1}])
def test_bad_ids_get_invalid_request(http_server: SpawnedServer, bad_id: object) -> None:
    with httpx.Client(timeout=30) as http:
        opened = http.post(http_server.url, json=INIT, headers=HEADERS)
        assert opened.status_code == 200
        session = {
            **HEADERS,
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        http.post(
            http_server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        body = json.dumps({"jsonrpc": "2.0", "id": bad_id, "method": "ping"})
        refused = http.post(http_server.url, content=body, headers=session)
        assert refused.status_code == 400
        assert refused.json() == ERROR
        sessionless = http.post(http_server.url, content=body, headers=HEADERS)
        assert sessionless.status_code == 400 and sessionless.json() == ERROR
        answered = http.post(
            http_server.url, json={"jsonrpc": "2.0", "id": "p", "method": "ping"}, headers=session
        )
        assert answered.status_code == 200
        assert '"id":"p","result":{}' in answered.text, "the session carries on"


def test_missing_document_resource_is_not_found_without_a_traceback(http_server: SpawnedServer) -> None:
    """Found by benches/fuzz_wire.py: ``doc://x`` for a missing id logged a traceback."""
    with httpx.Client(timeout=30) as http:
        opened = http.post(http_server.url, json=INIT, headers=HEADERS)
        session = {
            **HEADERS,
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        http.post(
            http_server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        read = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "resources/read",
            "params": {"uri": "doc://no-such-doc-xyz"},
        }
        answer = http.post(http_server.url, json=read, headers=session)
    data = next(json.loads(line[5:]) for line in answer.text.splitlines() if line.startswith("data:"))
    assert data["id"] == 7
    assert (
        "no document with id 'no-such-doc-xyz'; call list_documents to see the ids"
        in data["error"]["message"]
    )
    assert "Resource 'doc://no-such-doc-xyz' raised an unexpected exception" not in http_server.output()
