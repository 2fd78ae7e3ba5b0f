"""A real ``mcp-gemma serve --transport http`` process for the REST API tests, on the session's Redis.

The server has its own namespace; each test isolates its data with unique ids, agent ids or a
metadata tag it filters on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import SpawnedServer, server_env

MAX_BODY = 256 * 1024  # small, so the 413 tests send little


def spawn(data_dir: Path, redis_url: str, *args: str, **env: str) -> SpawnedServer:
    """A server on a free loopback port; ``env`` adds MCP_GEMMA_* settings."""
    return SpawnedServer(
        "http",
        data_dir,
        "--redis-url",
        redis_url,
        *args,
        env=server_env(
            data_dir,
            MCP_GEMMA_NAMESPACE=f"api{uuid.uuid4().hex[:8]}",
            MCP_GEMMA_HTTP__MAX_REQUEST_BYTES=str(MAX_BODY),
            **env,
        ),
    )


def base_url(server: SpawnedServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SpawnedServer]:
    server = spawn(tmp_path_factory.mktemp("api") / "data", redis_url)
    yield server
    server.stop()


@pytest.fixture
def api(api_server: SpawnedServer) -> Iterator[httpx.Client]:
    """An HTTP client of the session's REST server."""
    with httpx.Client(base_url=base_url(api_server), timeout=60) as client:
        yield client


@pytest.fixture
def tag() -> str:
    """A metadata value unique to the test, to filter its own documents."""
    return f"t{uuid.uuid4().hex[:10]}"
