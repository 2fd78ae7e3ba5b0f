"""Connect a real MCP client to the server over each transport.

``connect`` is parametrised: in-memory (the SDK's in-process transport), stdio (a spawned
``python -m mcp_gemma serve``), SSE and Streamable HTTP (spawned once per session, polled until
they answer). Every test isolates its data with its own namespace or unique ids.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

Connect = Callable[..., AbstractAsyncContextManager[Client]]
SERVER_START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_") and k != "REDIS_URL"}
    env.update({"MCP_GEMMA_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class SpawnedServer:
    """A ``mcp-gemma serve`` subprocess on a loopback port."""

    def __init__(self, transport: str, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.transport = transport
        self.log = data_dir.parent / f"{transport}-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._logfh = self.log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcp_gemma",
                "serve",
                "--transport",
                transport,
                "--port",
                str(self.port),
                *args,
            ],
            env=env or server_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}" + ("/mcp" if transport == "http" else "/sse")
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._logfh.close()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not listen within {SERVER_START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        if not self._logfh.closed:
            self._logfh.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logfh.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    server = SpawnedServer("http", tmp_path_factory.mktemp("http") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    server = SpawnedServer("sse", tmp_path_factory.mktemp("sse") / "data")
    yield server
    server.stop()


def stdio_params(data_dir: Path, *args: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_gemma", "serve", "--transport", "stdio", *args],
        env=server_env(data_dir, **env),
    )


@pytest.fixture(params=["memory", "stdio", "sse", "http"])
def connect(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Connect:
    """Open a real client session to the server over the parametrised transport."""
    kind: str = request.param

    @asynccontextmanager
    async def open_client(**client_kwargs: Any) -> AsyncIterator[Client]:
        if kind == "memory":
            target: Any = create_server(settings)
        elif kind == "stdio":
            target = stdio_params(
                tmp_path / "stdio-data",
                "--redis-url",
                settings.redis_url.get_secret_value() if settings.redis_url else "",
                "--config",
                str(_write_ns_config(tmp_path, settings)),
            )
        elif kind == "sse":
            server: SpawnedServer = request.getfixturevalue("sse_server")
            target = _SseTransport(server.url)
        else:
            server = request.getfixturevalue("http_server")
            target = server.url
        async with Client(target, **client_kwargs) as client:
            yield client

    return open_client


def _write_ns_config(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "ns.toml"
    path.write_text(f'namespace = "{settings.namespace}"\n', encoding="utf-8")
    return path


class _SseTransport:
    """Adapts the SDK's ``sse_client`` generator to the ``Transport`` protocol ``Client`` takes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        self._cm = sse_client(self.url)
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: object) -> bool | None:
        return bool(await self._cm.__aexit__(*exc))


def http_get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=5, **kwargs)


class BearerTransport:
    """The SDK's Streamable HTTP client with a bearer token (over HTTPS with ``certfile`` pinned)."""

    def __init__(self, url: str, token: str, certfile: Path | None = None) -> None:
        self.url, self.token, self.certfile = url, token, certfile

    async def __aenter__(self) -> Any:
        import ssl

        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        verify: Any = ssl.create_default_context(cafile=str(self.certfile)) if self.certfile else True
        self._http = httpx2.AsyncClient(headers={"authorization": f"Bearer {self.token}"}, verify=verify)
        await self._http.__aenter__()
        self._cm = streamable_http_client(self.url, http_client=self._http)
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)
        await self._http.__aexit__(*exc)
