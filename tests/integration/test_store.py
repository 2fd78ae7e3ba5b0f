"""The store on real servers: persistence across restarts and crashes, sharing, clear failures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest
from anyio import to_thread

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.settings import load_settings
from mcp_gemma.store.embedded import EmbeddedRedis
from mcp_gemma.store.redis import RedisStore

from ..conftest import redis_server_name
from .conftest import free_port

pytestmark = pytest.mark.anyio


def wait_until_gone(server: EmbeddedRedis, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while server.pid() and time.monotonic() < deadline:
        time.sleep(0.02)


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d")
    store = await RedisStore.open(settings)
    assert store.kind == "embedded" and store.embedded is not None
    await store.client.set(store.keys.kv("greeting"), b"hello")
    pid = store.embedded.pid()
    await store.close()
    assert store.embedded.pid() == 0, "the last user shuts the embedded server down"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    again = await RedisStore.open(settings)
    try:
        assert await again.client.get(again.keys.kv("greeting")) == b"hello"
    finally:
        await again.close()


async def test_acknowledged_writes_survive_kill_9_of_the_server(tmp_path: Path) -> None:
    # no watcher restarts in between: this test checks what the next start finds
    settings = load_settings(
        data_dir=tmp_path / "d", embedded_redis={"appendfsync": "always", "watch_interval_s": 60}
    )
    store = await RedisStore.open(settings)
    assert store.embedded is not None
    for i in range(200):
        await store.client.set(store.keys.kv(f"k{i}"), str(i).encode())
    os.kill(store.embedded.pid(), signal.SIGKILL)
    await to_thread.run_sync(wait_until_gone, store.embedded)
    assert store.embedded.pid() == 0
    await store.close(release=False)

    again = await RedisStore.open(settings)
    try:
        values = await again.client.mget([again.keys.kv(f"k{i}") for i in range(200)])
        assert values == [str(i).encode() for i in range(200)]
    finally:
        await again.close()


async def test_two_processes_share_one_embedded_server(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d")
    first = await RedisStore.open(settings)
    second = await RedisStore.open(settings)
    assert first.embedded is not None and second.embedded is not None
    assert first.embedded.started_here and not second.embedded.started_here
    pid = first.embedded.pid()
    # Same process here, so both connections carry the same name: release() of one must not stop the
    # server the other is using only when names differ; simulate a second process by renaming it.
    await second.client.client_setname("mcp-gemma:999999999")
    await first.close()
    assert second.embedded.pid() == pid, "still serving the other process"
    assert await second.client.ping()
    await second.client.client_setname(f"mcp-gemma:{os.getpid()}")
    await second.close()
    assert second.embedded.pid() == 0


async def test_unreachable_redis_url_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(
        data_dir=tmp_path / "d", redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=1
    )
    with (
        anyio.fail_after(120),  # a hang guard, not a timing assertion
        pytest.raises(StoreUnavailableError, match=rf"cannot connect to Redis at redis://127.0.0.1:{port}/0"),
    ):
        await RedisStore.open(settings)


async def test_wrong_password_is_a_clear_error(external_redis: str, tmp_path: Path) -> None:
    url = external_redis.replace("s3cret-pw", "wrong-password")
    settings = load_settings(data_dir=tmp_path / "d", redis_url=url)
    with pytest.raises(StoreUnavailableError, match="refused authentication") as info:
        await RedisStore.open(settings)
    assert "wrong-password" not in str(info.value)
    no_password = load_settings(data_dir=tmp_path / "d", redis_url=external_redis.replace(":s3cret-pw@", ""))
    with pytest.raises(StoreUnavailableError, match="requires a password"):
        await RedisStore.open(no_password)


async def test_external_redis_server(external_redis: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d", redis_url=external_redis)
    store = await RedisStore.open(settings)
    try:
        assert store.kind == "external"
        assert (await store.server_version()).startswith(redis_server_name() + " ")
        assert await store.ping_ms() >= 0
    finally:
        await store.close()


def _loose(root: Path) -> dict[str, str]:
    """Everything under ``root`` that its group or others may touch, with its mode."""
    return {
        str(p.relative_to(root)): oct(p.lstat().st_mode & 0o777)
        for p in (root, *root.rglob("*"))
        if not p.is_symlink() and p.lstat().st_mode & 0o077
    }


async def test_data_dir_and_embedded_server_files_are_owner_only(tmp_path: Path) -> None:
    import anyio
    from mcp import Client

    from mcp_gemma.server.app import create_server

    data = tmp_path / "data"
    old = data / "redis" / "appendonlydir" / "from-an-older-version.aof"
    old.parent.mkdir(parents=True)
    data.chmod(0o755)
    old.write_text("", encoding="utf-8")
    for path in (old, old.parent, old.parent.parent):
        path.chmod(0o755 if path.is_dir() else 0o644)
    fresh = tmp_path / "fresh" / "data"
    saved = os.umask(0o022)  # the usual umask, which made the AOF 0644
    try:
        for data_dir in (data, fresh):
            with anyio.fail_after(120):
                async with Client(create_server(load_settings(data_dir=data_dir))) as client:
                    result = await client.call_tool(
                        "ingest_document", {"id": "private", "text": "a secret " * 50}
                    )
                    assert result.is_error is False
                    assert (data_dir / "redis" / "appendonlydir").is_dir()
                    assert _loose(data_dir / "redis") == {}
            # A data dir that was there before keeps its mode (it is the user's); all inside is private.
            assert _loose(data_dir) == ({".": "0o755"} if data_dir == data else {})
        assert oct(fresh.stat().st_mode & 0o777) == "0o700"
    finally:
        os.umask(saved)


async def test_a_write_no_replica_confirms_is_a_clear_error(tmp_path: Path, redis_url: str) -> None:
    from mcp_gemma.state import AppState

    settings = load_settings(
        data_dir=tmp_path / "d",
        redis_url=redis_url,
        namespace=f"t{os.getpid()}wait",
        redis_min_replicas_ack=1,
        redis_wait_timeout_ms=50,
    )
    state = await AppState.open(settings)
    try:
        with pytest.raises(
            StoreUnavailableError, match="only 0 of redis_min_replicas_ack=1 replicas confirmed"
        ):
            await state.rag.ingest("A server with no replica cannot confirm this.", doc_id="lonely")
        with pytest.raises(
            StoreUnavailableError, match="only 0 of redis_min_replicas_ack=1 replicas confirmed"
        ):
            await state.memory.store(["Nor this."])
    finally:
        await state.close()
