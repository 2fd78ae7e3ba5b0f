"""Fuzz the MCP wire: random and malformed JSON-RPC over Streamable HTTP and stdio, for a while.

    python benches/fuzz_wire.py [--seconds 600] [--seed 1] [--quick]

A real ``mcp-gemma serve`` (HTTP with the rate limits off, and stdio) on a private data directory gets
messages built from a seeded generator: ids of every JSON type, wrong ``jsonrpc`` values, unknown and
non-string methods, params of every shape (deep nesting, long strings), tool calls with random
arguments to the cheap tools, truncated JSON, bytes that are not UTF-8, arrays, bare values. Pass:

- HTTP: every POST is answered within ``ANSWER_TIMEOUT_S`` with a status below 500, and a request
  with a string or integer id that the SDK takes gets a JSON-RPC answer with that id;
- stdio: after each line a ``ping`` with a fresh id is answered within ``ANSWER_TIMEOUT_S`` (the
  server never stops reading), and every line it writes is JSON;
- both servers still answer at the end, and their logs hold no traceback.

Prints a JSON summary (messages sent, statuses, failures with the message that caused them); exits 1
when anything failed. ``--quick`` is 20 s. This is a long run for a person to start, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401 - clears OPENBLAS_* before numpy loads
import httpx
from bench_load import free_port, spawn

ANSWER_TIMEOUT_S = 30.0
CHEAP_TOOLS = (
    "health_check",
    "search_documents",
    "list_documents",
    "get_document",
    "recall_memory",
    "get_memory_stats",
    "store_memory",
    "ingest_document",
    "delete_document",
    "no_such_tool",
)
METHODS = (
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "prompts/list",
    "x/unknown",
)
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "fuzz", "version": "0"},
    },
}


def scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.randint(-(2**70), 2**70),
            rng.randint(0, 100),
            rng.random() * 1e6,
            "".join(rng.choice("aé\u200b\x00\U0001f600 z") for _ in range(rng.randint(0, 40))),
            True,
            False,
            None,
        ]
    )


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return scalar(rng)
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(scalar(rng))[:20]: value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def deep(n: int) -> Any:
    out: Any = 1
    for _ in range(n):
        out = {"a": out}
    return out


def message(rng: random.Random, n: int) -> tuple[bytes, Any]:
    """One message to send, as bytes, and the parsed object when it is JSON (else None)."""
    roll = rng.random()
    if roll < 0.05:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), None
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": n, "method": rng.choice(METHODS)}
    if body["method"] == "tools/call":
        args = {
            k: value(rng) for k in rng.sample(["query", "text", "content", "id", "limit", "k", "agent_id"], 3)
        }
        if rng.random() < 0.3:  # well-formed now and then, so the tools run too
            args = {"query": f"fuzz {n}"} if rng.random() < 0.5 else {"content": f"fuzz memory {n}"}
        body["params"] = {"name": rng.choice(CHEAP_TOOLS), "arguments": args}
    elif body["method"] == "resources/read":
        body["params"] = {
            "uri": rng.choice(["doc://x", "memory://short_term", "memory://nope/1", str(scalar(rng))])
        }
    mutation = rng.random()
    if mutation < 0.15:
        body["id"] = value(rng)
    elif mutation < 0.2:
        del body["id"]
    elif mutation < 0.25:
        body["jsonrpc"] = rng.choice(["1.0", 2.0, None, ""])
    elif mutation < 0.3:
        body["method"] = value(rng)
    elif mutation < 0.4:
        body["params"] = rng.choice([value(rng), deep(rng.randint(50, 400)), "x" * rng.randint(0, 200_000)])
    raw = json.dumps(body).encode()
    shape = rng.random()
    if shape < 0.05:
        return raw[: rng.randint(0, len(raw))], None
    if shape < 0.08:
        return json.dumps([body]).encode(), [body]
    if shape < 0.1:
        bare = rng.choice(["null", "1", '"x"', "[]", "{}"])
        return bare.encode(), json.loads(bare)
    return raw, body


def readable_id(obj: Any) -> bool:
    if not isinstance(obj, dict) or "id" not in obj:
        return False
    value = obj["id"]
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def answer_ids(text: str) -> list[Any]:
    """The ids of the JSON-RPC answers in a response body (plain JSON or SSE ``data:`` lines)."""
    found = []
    for line in [text, *(ln[5:] for ln in text.splitlines() if ln.startswith("data:"))]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "id" in obj:
            found.append(obj["id"])
    return found


def fuzz_http(url: str, rng: random.Random, until: float, failures: list[dict[str, Any]]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    with httpx.Client(timeout=ANSWER_TIMEOUT_S) as http:
        opened = http.post(url, json=INIT, headers=HEADERS)
        session = {
            **HEADERS,
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        n = 1
        while time.monotonic() < until:
            raw, obj = message(rng, n)
            n += 1
            try:
                answer = http.post(url, content=raw, headers=session)
            except httpx.TimeoutException:
                failures.append(
                    {"transport": "http", "problem": "no answer", "message": raw[:300].decode("latin-1")}
                )
                continue
            statuses[str(answer.status_code)] += 1
            if answer.status_code >= 500:
                failures.append(
                    {
                        "transport": "http",
                        "problem": f"status {answer.status_code}",
                        "message": raw[:300].decode("latin-1"),
                    }
                )
            elif (
                answer.status_code == 200
                and readable_id(obj)
                and isinstance(obj.get("method"), str)
                and obj["id"] not in answer_ids(answer.text)
            ):
                failures.append(
                    {
                        "transport": "http",
                        "problem": "answer without the id",
                        "message": raw[:300].decode("latin-1"),
                    }
                )
    return statuses


def fuzz_stdio(data_dir: Path, rng: random.Random, until: float, failures: list[dict[str, Any]]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_") and k != "REDIS_URL"}
    env.update({"MCP_GEMMA_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"})
    log = data_dir.parent / "stdio.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdin is not None and proc.stdout is not None
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""

    def wait_for(probe: str) -> bool:
        nonlocal buffer
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    answer = json.loads(line)
                except ValueError:
                    failures.append(
                        {
                            "transport": "stdio",
                            "problem": "stdout line is not JSON",
                            "line": line[:300].decode("latin-1"),
                        }
                    )
                    continue
                if isinstance(answer, dict) and answer.get("id") == probe:
                    return True
            if selector.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    return False
                buffer += chunk
        return False

    def send(raw: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(raw.replace(b"\n", b" ") + b"\n")
        proc.stdin.flush()

    sent = 0
    try:
        send(json.dumps(INIT).encode())
        send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        n = 1
        while time.monotonic() < until:
            raw, _ = message(rng, n)
            n += 1
            send(raw)
            sent += 1
            probe = f"probe-{n}"
            send(json.dumps({"jsonrpc": "2.0", "id": probe, "method": "ping"}).encode())
            if not wait_for(probe):
                failures.append(
                    {
                        "transport": "stdio",
                        "problem": "stopped answering",
                        "message": raw[:300].decode("latin-1"),
                    }
                )
                break
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    if "Traceback" in text:
        start = text.index("Traceback")
        failures.append(
            {"transport": "stdio", "problem": "traceback in the log", "log": text[start - 300 : start + 3000]}
        )
    return sent


def run(seconds: float, seed: int) -> dict[str, Any]:
    """Fuzz HTTP for ``seconds``, then stdio for as long; the summary of both."""
    rng = random.Random(seed)
    failures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mcp-gemma-fuzz-") as tmp:
        port = free_port()
        log = Path(tmp) / "http.log"
        # The rate limits off: the fuzz is one fast client by design.
        proc = spawn(Path(tmp) / "http-data", port, log, {"MCP_GEMMA_HTTP__LIMITS__ENABLED": "false"})
        try:
            statuses = fuzz_http(f"http://127.0.0.1:{port}/mcp", rng, time.monotonic() + seconds, failures)
            alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if not alive:
            failures.append({"transport": "http", "problem": "server did not answer at the end"})
        text = log.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text:
            start = text.index("Traceback")
            failures.append(
                {
                    "transport": "http",
                    "problem": "traceback in the server log",
                    "log": text[start - 300 : start + 3000],
                }
            )
        lines = fuzz_stdio(Path(tmp) / "stdio-data", rng, time.monotonic() + seconds, failures)
    return {
        "seed": seed,
        "seconds_per_transport": seconds,
        "http_messages": sum(statuses.values()),
        "http_statuses": dict(sorted(statuses.items())),
        "stdio_messages": lines,
        "failures": failures[:20],
        "failure_count": len(failures),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="time per transport (default 600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20 s per transport")
    args = parser.parse_args()
    summary = run(20.0 if args.quick else args.seconds, args.seed)
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["failure_count"] else 0)
