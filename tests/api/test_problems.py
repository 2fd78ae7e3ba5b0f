"""Problem documents from the app itself (no server process): an unexpected exception is a 500
problem without a trace, and a request before the state is open is a 503 problem."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from mcp_gemma.api.app import create_api
from mcp_gemma.settings import load_settings
from mcp_gemma.state import SharedState


def test_unexpected_errors_and_a_closed_state_are_problems(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    app = create_api(settings, SharedState(settings))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1:8765") as client:
        r = client.get("/boom")
        assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "type": "urn:mcp-gemma:problem:internal",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "GET /boom failed (RuntimeError); the server log has details",
        }
        closed = client.get("/v1/documents")
        assert closed.status_code == 503 and closed.headers["retry-after"] == "1"
        assert closed.json()["type"] == "urn:mcp-gemma:problem:store-unavailable"
        assert client.get("/healthz").json()["status"] == "ok"
