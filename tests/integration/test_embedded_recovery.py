"""The embedded Valkey killed under a running server: tools say so, the server restarts it, and the
data written before the kill is found again (issue 17)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import load_settings
from mcp_gemma.state import SharedState

pytestmark = pytest.mark.anyio


async def call(client: Client, tool: str, **args: Any) -> tuple[bool, str, dict[str, Any] | None]:
    """A tool's outcome: is_error, its text and its structured content."""
    result = await client.call_tool(tool, args)
    text = str(result.content[0].text) if result.content else ""  # type: ignore[union-attr]
    return bool(result.is_error), text, result.structured_content


async def health(client: Client) -> dict[str, Any]:
    failed, text, report = await call(client, "health_check")
    assert not failed and report is not None, text
    return report


async def test_a_killed_embedded_redis_is_restarted_and_the_tools_recover(tmp_path: Path) -> None:
    # appendfsync=always as in test_store.py: every acknowledged write is in the AOF before the kill
    settings = load_settings(
        data_dir=tmp_path / "d",
        embedded_redis={"appendfsync": "always", "watch_interval_s": 0.1},
        redis_timeout_s=2,
    )
    shared = SharedState(settings)
    with anyio.fail_after(120):
        async with shared.hold() as state, Client(create_server(settings, shared)) as client:
            embedded = state.store.embedded
            assert embedded is not None
            failed, text, _ = await call(client, "store_memory", content="the kill drill is on Tuesdays")
            assert not failed, text
            failed, text, doc = await call(
                client, "ingest_document", text="Valkey keeps an append-only file of every write."
            )
            assert not failed and doc is not None, text
            # the in-process indexes are built now, before the kill
            failed, text, found = await call(client, "search_documents", query="append-only file")
            assert not failed and found is not None and found["hits"], text
            failed, text, _ = await call(client, "recall_memory", query="kill drill")
            assert not failed and "Tuesdays" in text, text

            # while the watcher is paused the server stays down: the errors name the embedded server
            embedded.stop_supervising()
            pid = embedded.pid()
            os.kill(pid, signal.SIGKILL)
            report = await health(client)
            while report["redis"]["ok"]:  # the kill lands asynchronously
                report = await health(client)
            assert report["status"] == "degraded"
            error = report["redis"]["error"]
            assert "the embedded Redis" in error and "restarted" in error
            assert "REDIS_URL" not in error
            failed, text, _ = await call(client, "store_memory", content="written while it is down")
            assert failed
            assert "the embedded Redis" in text and "REDIS_URL" not in text and "Traceback" not in text

            # the watcher restarts it; health_check recovers without anything else being done
            embedded.supervise(settings.embedded_redis.watch_interval_s)
            report = await health(client)
            while report["status"] != "ok":
                await anyio.sleep(0.1)
                report = await health(client)
            assert report["redis"]["restarts"] == 1
            assert embedded.pid() not in (0, pid)

            failed, text, found = await call(client, "search_documents", query="append-only file")
            assert not failed and found is not None, text
            assert [h["doc_id"] for h in found["hits"]][:1] == [doc["id"]]
            failed, text, _ = await call(client, "recall_memory", query="kill drill")
            assert not failed and "Tuesdays" in text, text
            failed, text, _ = await call(client, "store_memory", content="written after the restart")
            assert not failed, text
            failed, text, _ = await call(client, "recall_memory", query="after the restart")
            assert not failed and "written after the restart" in text, text


async def test_health_is_not_ok_until_a_restart_is_counted(tmp_path: Path) -> None:
    # The watcher's new server answers before the watcher counts the restart (and the indexes see
    # the new generation): health_check must not call that window "ok" with the old count. The
    # window is set here by hand, as the watcher sets it, instead of raced for.
    settings = load_settings(data_dir=tmp_path / "d")
    shared = SharedState(settings)
    with anyio.fail_after(120):
        async with shared.hold() as state, Client(create_server(settings, shared)) as client:
            embedded = state.store.embedded
            assert embedded is not None
            assert (await health(client))["status"] == "ok"
            embedded.down_since = time.monotonic()
            report = await health(client)
            assert report["status"] == "degraded" and not report["redis"]["ok"]
            assert "being restarted" in report["redis"]["error"] and report["redis"]["restarts"] == 0
            embedded.restarts, embedded.down_since = 1, None  # what the watcher does next
            report = await health(client)
            assert report["status"] == "ok" and report["redis"]["restarts"] == 1
