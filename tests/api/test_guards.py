"""Bearer auth, CORS by allow-list and extra allowed hosts, on a server configured for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import SpawnedServer

from .conftest import base_url, spawn
from .test_documents_search import problem

TOKEN = "tok-rest-123"
APP = "https://console.example"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SpawnedServer]:
    server = spawn(
        Path(tmp_path_factory.mktemp("guarded")) / "data",
        redis_url,
        MCP_GEMMA_AUTH_TOKEN=TOKEN,
        MCP_GEMMA_HTTP__CORS_ORIGINS=f'["{APP}"]',
        MCP_GEMMA_HTTP__ALLOWED_HOSTS='["api.example:*"]',
    )
    yield server
    server.stop()


def test_bearer_token_is_required(guarded: SpawnedServer) -> None:
    with httpx.Client(base_url=base_url(guarded)) as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            denied = problem(http.get("/v1/documents", headers=headers), 401)
            assert "MCP_GEMMA_AUTH_TOKEN" in denied["detail"]
            assert denied["type"] == "urn:mcp-gemma:problem:unauthorized"
        ok = http.get("/v1/documents", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["offset"] == 0


def test_cors_only_for_the_allowed_origin_and_extra_hosts(guarded: SpawnedServer) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base_url(guarded), headers=auth) as http:
        allowed = http.get("/healthz", headers={"origin": APP})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP
        preflight = httpx.options(  # a browser sends no credentials on a preflight
            base_url(guarded) + "/v1/search",
            headers={
                "origin": APP,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "POST" in preflight.headers["access-control-allow-methods"]
        stranger = httpx.options(
            base_url(guarded) + "/v1/search",
            headers={"origin": "https://other.example", "access-control-request-method": "POST"},
        )
        problem(stranger, 403)
        other = problem(http.get("/healthz", headers={"origin": "https://other.example"}), 403)
        assert "'https://other.example'" in other["detail"]
        named = http.get("/healthz", headers={"host": f"api.example:{guarded.port}"})
        assert named.status_code == 200
        problem(http.get("/healthz", headers={"host": "api.example.evil:80"}), 421)
