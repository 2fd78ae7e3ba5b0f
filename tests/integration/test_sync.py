"""Folder sync: the ``sync_folder`` tool over an MCP client session, and ``mcp-gemma sync --watch`` as a
real process following changes through inotify; on the real Redis and MiniLM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

pytestmark = pytest.mark.anyio


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def test_sync_folder_follows_changes_and_removes_only_its_own(
    settings: Settings, tmp_path: Path
) -> None:
    kb = tmp_path / "kb"
    other = tmp_path / "other"
    (kb / "sub").mkdir(parents=True)
    other.mkdir()
    (kb / "a.md").write_text("Tides follow the moon.", encoding="utf-8")
    (kb / "b.txt").write_text("Glaciers are slow rivers of ice.", encoding="utf-8")
    (kb / "sub" / "c.md").write_text("Volcanoes build islands.", encoding="utf-8")
    (other / "keep.md").write_text("Ingested, not synced.", encoding="utf-8")
    with_roots = load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
        namespace=settings.namespace,
        allowed_roots=[str(kb), str(other)],
    )
    real = str(kb.resolve())
    with anyio.fail_after(240):
        async with Client(create_server(with_roots)) as client:
            await client.call_tool("ingest_document", {"text": "A note by hand.", "id": "manual"})
            await client.call_tool("batch_ingest", {"paths": [str(other)]})

            first = _data(await client.call_tool("sync_folder", {"path": str(kb)}))
            assert (first["root"], first["created"], first["unchanged"], first["removed"]) == (real, 3, 0, [])
            assert sorted(first["changed"]) == ["file:a.md", "file:b.txt", "file:sub/c.md"]
            doc = _data(
                await client.call_tool("get_document", {"id": "file:sub/c.md", "include_text": False})
            )
            assert doc["metadata"] == {"source": "sub/c.md", "format": "md", "sync_root": real}

            again = _data(await client.call_tool("sync_folder", {"path": str(kb)}))
            assert (again["created"], again["replaced"], again["unchanged"], again["changed"]) == (
                0,
                0,
                3,
                [],
            )
            assert again["removed"] == [] and again["chunks"] == 0

            (kb / "a.md").write_text("Tides follow the moon and the sun.", encoding="utf-8")
            (kb / "b.txt").unlink()
            (kb / "d.md").write_text("Deserts get little rain.", encoding="utf-8")
            (kb / "sub" / "c.md").write_bytes(b"\x00\x01 now binary")
            changed = _data(await client.call_tool("sync_folder", {"path": str(kb)}))
            assert (changed["created"], changed["replaced"], changed["unchanged"]) == (1, 1, 0)
            assert sorted(changed["changed"]) == ["file:a.md", "file:d.md"]
            assert changed["removed"] == ["file:b.txt"]
            # a file still there but unreadable this time keeps its document
            assert [(Path(f["source"]).name, f["reason"]) for f in changed["failed"]] == [("c.md", "binary")]
            listed = _data(await client.call_tool("list_documents", {"limit": 100}))
            assert sorted(d["id"] for d in listed["documents"]) == [
                "file:a.md",
                "file:d.md",
                "file:keep.md",
                "file:sub/c.md",
                "manual",
            ]

            (kb / "sub" / "c.md").unlink()
            (kb / "a.md").unlink()
            (kb / "d.md").unlink()
            emptied = _data(await client.call_tool("sync_folder", {"path": str(kb)}))
            assert emptied["removed"] == ["file:a.md", "file:d.md", "file:sub/c.md"]
            left = _data(await client.call_tool("list_documents", {"limit": 100}))
            assert sorted(d["id"] for d in left["documents"]) == ["file:keep.md", "manual"]

            refused = await client.call_tool("sync_folder", {"path": str(other / "keep.md")})
            assert refused.is_error
            assert "is not a folder" in refused.content[0].text  # type: ignore[union-attr]


def _reader(stream: Any, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


def _next_report(lines: queue.Queue[str], proc: subprocess.Popen[str], want: Any) -> dict[str, Any]:
    """The first JSON report on stdout that ``want`` accepts (passes may come in pairs: a file's
    create and write events can fall into two bursts)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "sync --watch exited early"
            continue
        report: dict[str, Any] = json.loads(line)
        if want(report):
            return report
    raise AssertionError("no matching sync report within 120 s")


def test_cli_sync_watch_follows_the_folder(settings: Settings, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "first.md").write_text("Tides follow the moon.", encoding="utf-8")
    assert settings.redis_url is not None
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "MCP_GEMMA_NAMESPACE": settings.namespace,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_gemma",
            "sync",
            str(kb),
            "--watch",
            "--data-dir",
            str(settings.data_dir),
            "--redis-url",
            settings.redis_url.get_secret_value(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        start = _next_report(lines, proc, lambda r: True)
        assert (start["created"], start["changed"]) == (1, ["file:first.md"])
        (kb / "second.md").write_text("Glaciers are slow rivers of ice.", encoding="utf-8")
        added = _next_report(lines, proc, lambda r: r["changed"] or r["removed"])
        assert (added["changed"], added["removed"], added["unchanged"]) == (["file:second.md"], [], 1)
        (kb / "first.md").unlink()
        gone = _next_report(lines, proc, lambda r: r["changed"] or r["removed"])
        assert (gone["changed"], gone["removed"], gone["unchanged"]) == ([], ["file:first.md"], 1)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
