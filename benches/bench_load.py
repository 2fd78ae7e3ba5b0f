"""Many concurrent HTTP sessions against one server: latency per tool, errors and timeouts.

    python benches/bench_load.py [--quick] [--sessions N] [--calls N]

A real ``mcp-gemma serve --transport http`` subprocess on 127.0.0.1 with a private embedded Redis.
``SESSIONS`` client sessions (50; 8 with --quick) each make ``CALLS`` mixed calls (20; 5 with
--quick) in turn: ``store_memory`` of a new text, ``recall_memory``, ``ingest_document`` of a small
new document and ``search_documents``, all sessions at once. Every call has ``CALL_TIMEOUT_S`` (60 s,
the timeout of the issue-17 report): one that passes it counts as a timeout, a tool error as an
error (``server busy`` refusals are counted apart). The peer, in the same run, is the same mix from
one session alone: what a call costs without contention. The server's resident and peak memory after
the run are reported too (`server_memory_mib`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import anyio
import numpy as np

CALL_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 900.0
TOOLS = ("store_memory", "recall_memory", "ingest_document", "search_documents")
WORDS = _common.WORDS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    data_dir: Path, port: int, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``mcp-gemma serve --transport http`` on ``port``, listening when this returns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_") and k != "REDIS_URL"}
    env.update({"MCP_GEMMA_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **(extra_env or {})})
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "http", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text(encoding='utf-8')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not listen within 60 s")


def arguments(tool: str, rng: random.Random, tag: str) -> dict[str, Any]:
    """Arguments of one call: new texts each time, so every store and ingest embeds."""
    text = f"{tag}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))
    if tool == "store_memory":
        return {"content": text}
    if tool == "ingest_document":
        return {"text": " ".join([text] * 4)}
    return {"query": " ".join(rng.choice(WORDS) for _ in range(3))}


class Tally:
    """Latencies per tool and the failures, across sessions."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.busy: dict[str, int] = defaultdict(int)
        self.timeouts: dict[str, int] = defaultdict(int)
        self.samples: list[str] = []

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tool in TOOLS:
            arr = np.array(self.latency.get(tool) or [float("nan")]) * 1e3
            out[tool] = {
                "p50_ms": round(float(np.percentile(arr, 50)), 1),
                "p99_ms": round(float(np.percentile(arr, 99)), 1),
                "ok": len(self.latency.get(tool, [])),
                "errors": self.errors[tool],
                "busy": self.busy[tool],
                "timeouts": self.timeouts[tool],
            }
        out["error_samples"] = self.samples[:5]
        return out


async def session(url: str, calls: int, seed: int, tally: Tally) -> None:
    """One client session making ``calls`` mixed calls in turn."""
    from mcp import Client

    rng = random.Random(seed)
    async with Client(url) as client:
        for i in range(calls):
            tool = TOOLS[(seed + i) % len(TOOLS)]
            args = arguments(tool, rng, f"s{seed} c{i}")
            started = time.perf_counter()
            with anyio.move_on_after(CALL_TIMEOUT_S) as scope:
                result = await client.call_tool(tool, args)
            if scope.cancelled_caught:
                tally.timeouts[tool] += 1
                continue
            if result.is_error:
                text = str(getattr(result.content[0], "text", "")) if result.content else ""
                if "server busy" in text:
                    tally.busy[tool] += 1
                else:
                    tally.errors[tool] += 1
                    tally.samples.append(f"{tool}: {text[:200]}")
                continue
            tally.latency[tool].append(time.perf_counter() - started)


async def load(url: str, sessions: int, calls: int) -> dict[str, Any]:
    """All sessions at once; then the peer, one session alone."""
    with anyio.fail_after(120):
        await warm_up(url)
    tally = Tally()
    started = time.perf_counter()
    with anyio.fail_after(RUN_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            for s in range(sessions):
                tg.start_soon(session, url, calls, s, tally)
    wall = time.perf_counter() - started
    alone = Tally()
    with anyio.fail_after(RUN_TIMEOUT_S):
        await session(url, 2 * len(TOOLS), 10_000, alone)
    return {
        "sessions": sessions,
        "calls_per_session": calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(sessions * calls / wall, 1),
        "concurrent": tally.summary(),
        "one_session_peer": alone.summary(),
    }


async def warm_up(url: str) -> None:
    """A first session that loads the embedder and the indexes before timing starts."""
    from mcp import Client

    async with Client(url) as client:
        await client.call_tool("store_memory", {"content": "warm-up"})
        await client.call_tool("search_documents", {"query": "warm-up"})


def _memory_mib(pid: int) -> dict[str, float]:
    """The server's resident and peak resident memory (VmRSS, VmHWM) after the run, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found["rss" if key == "VmRSS" else "peak"] = round(int(value.split()[0]) / 1024, 1)
    return found


def run(quick: bool = False, sessions: int | None = None, calls: int | None = None) -> dict[str, Any]:
    """The load bench (8 sessions x 5 calls with ``quick``, else 50 x 20; ``sessions``/``calls`` override)."""
    _common.require_release()
    default_sessions, default_calls = (8, 5) if quick else (50, 20)
    sessions = sessions or default_sessions
    calls = calls or default_calls
    with tempfile.TemporaryDirectory(prefix="mcp-gemma-load-") as tmp:
        port = free_port()
        proc = spawn(Path(tmp) / "data", port, Path(tmp) / "server.log")
        try:
            result = anyio.run(load, f"http://127.0.0.1:{port}/mcp", sessions, calls)
            result["server_memory_mib"] = _memory_mib(proc.pid)
            return result
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 sessions x 5 calls (CI smoke)")
    parser.add_argument("--sessions", type=int, help="concurrent sessions (default 50)")
    parser.add_argument(
        "--calls", type=int, help="calls per session (default 20; the issue-17 target is 100)"
    )
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, sessions=args.sessions, calls=args.calls), indent=2))
