"""A real ``mcp-gemma serve --transport http`` for the REST and WebSocket tests, and helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import SpawnedServer, server_env


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory: pytest.TempPathFactory, shared_models_dir: Path) -> Iterator[SpawnedServer]:
    """One server for the chat tests; its Gemma uses the session's conversion cache."""
    data = tmp_path_factory.mktemp("chat") / "data"
    server = SpawnedServer(
        "http", data, env=server_env(data, MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir))
    )
    yield server
    server.stop()
