"""Redis going away while the server runs: clear tool errors, no hang, and recovery when it is back."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import load_settings

from ..conftest import redis_server_binary
from .conftest import free_port

pytestmark = pytest.mark.anyio


class RedisProcess:
    """A throw-away standalone server (redis_server_binary) this test may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        binary = redis_server_binary()
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_tools_fail_clearly_while_redis_is_down_and_recover(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "d", redis_url=f"redis://127.0.0.1:{redis_process.port}/0", redis_timeout_s=2
    )
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            stored = await client.call_tool(
                "store_memory", {"content": "the outage drill works", "importance": 0.5}
            )
            assert stored.is_error is False, stored.content

            redis_process.stop()
            health = await client.call_tool("health_check", {})
            assert health.is_error is False
            assert health.structured_content is not None
            assert health.structured_content["status"] == "degraded"
            assert "cannot connect to Redis" in health.structured_content["redis"]["error"]

            down = await client.call_tool("store_memory", {"content": "written during the outage"})
            assert down.is_error is True
            assert "Redis" in down.content[0].text  # type: ignore[union-attr]
            assert "Traceback" not in down.content[0].text  # type: ignore[union-attr]

            redis_process.start()
            again = await client.call_tool("health_check", {})
            assert again.structured_content is not None
            assert again.structured_content["status"] == "ok"
            recalled = await client.call_tool("recall_memory", {"query": "outage drill", "limit": 3})
            assert recalled.is_error is False, recalled.content
            assert "the outage drill works" in str(recalled.structured_content)
