"""REST ``POST /v1/search`` next to the MCP ``search_documents`` tool, on one server and corpus.

    python benches/bench_rest.py [--quick]

The server is built as ``serve --transport http`` builds it (``build_http_app``: bearer check, path
dispatch, the MCP endpoint and the REST API) over a private embedded Redis, and served by uvicorn
on a loopback port inside this process, so the bare service call can be timed in the same run.
The corpus (1,000 documents of ~40 words; 100 with --quick) goes in through ``batch_ingest``. Then
the same vector search is made ``RUNS`` times (400; 60 with --quick) four ways, interleaved, the
order rotated each round:

- ``service``: ``RagService.search`` called directly (what both front ends call);
- ``rest_asgi``: ``POST /v1/search`` as raw ASGI messages into the whole app in process: the REST
  layer (bearer check, dispatch, guards, metrics, routing, validation, serialisation) without the
  network or an HTTP client;
- ``rest_http``: ``POST /v1/search`` over loopback HTTP (one keep-alive httpx client);
- ``mcp_http``: the ``search_documents`` tool over Streamable HTTP (one MCP session).

The query repeats, so its embedding is cached. The target: the REST layer adds < 1 ms p50
(``rest_asgi`` − ``service``); ``rest_http`` against ``mcp_http`` compares the two protocols.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import anyio
import numpy as np

QUERY = "river engine protocol garden"
LIMIT = 5


def corpus(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {"id": f"doc-{i}", "text": " ".join(rng.choice(_common.WORDS) for _ in range(40))} for i in range(n)
    ]


def stats(samples_ms: list[float]) -> dict[str, float]:
    arr = np.array(samples_ms)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(data_dir: Path, docs: int, runs: int) -> dict[str, Any]:
    import httpx
    import uvicorn
    from mcp import Client

    from mcp_gemma.server.run import build_http_app, configure_logging
    from mcp_gemma.settings import load_settings
    from mcp_gemma.state import SharedState

    configure_logging("WARNING")
    port = free_port()
    settings = load_settings(data_dir=data_dir, transport="streamable-http", http={"port": port})
    shared = SharedState(settings)
    async with shared.hold() as state, anyio.create_task_group() as tg:
        app = build_http_app(settings, shared)
        configure_logging("WARNING")  # as `serve --log-level WARNING`: no per-request log lines timed
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        tg.start_soon(server.serve)
        with anyio.fail_after(60):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await anyio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        body = {"query": QUERY, "mode": "vector", "limit": LIMIT}
        async with (
            httpx.AsyncClient(base_url=base, timeout=120) as http,
            Client(f"{base}/mcp") as mcp,
        ):
            with anyio.fail_after(600):
                ingested = await mcp.call_tool("batch_ingest", {"documents": corpus(docs)})
            assert not ingested.is_error, ingested.content

            async def service() -> list[str]:
                return [h.doc_id for h in (await state.rag.search(QUERY, limit=LIMIT)).hits]

            raw_body = json.dumps(body).encode()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/search",
                "raw_path": b"/v1/search",
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", f"127.0.0.1:{port}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw_body)).encode()),
                ],
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", port),
            }

            async def rest_asgi() -> list[str]:
                sent: list[dict[str, Any]] = []

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": raw_body, "more_body": False}

                async def send(message: dict[str, Any]) -> None:
                    sent.append(message)

                await app(dict(scope), receive, send)
                assert sent[0]["status"] == 200, sent
                payload = b"".join(m.get("body", b"") for m in sent[1:])
                return [h["doc_id"] for h in json.loads(payload)["hits"]]

            async def rest_http() -> list[str]:
                r = await http.post("/v1/search", json=body)
                r.raise_for_status()
                return [h["doc_id"] for h in r.json()["hits"]]

            async def mcp_http() -> list[str]:
                result = await mcp.call_tool("search_documents", {"query": QUERY, "limit": LIMIT})
                assert not result.is_error and result.structured_content is not None, result.content
                return [h["doc_id"] for h in result.structured_content["hits"]]

            ways: list[tuple[str, Callable[[], Awaitable[list[str]]]]] = [
                ("service", service),
                ("rest_asgi", rest_asgi),
                ("rest_http", rest_http),
                ("mcp_http", mcp_http),
            ]
            for _ in range(10):  # warm every path: embedding cached, connections open
                for _name, call in ways:
                    await call()
            samples: dict[str, list[float]] = {name: [] for name, _ in ways}
            hits: set[tuple[str, ...]] = set()
            for i in range(runs):
                for name, call in ways[i % 4 :] + ways[: i % 4]:
                    await anyio.sleep(0.002)  # let the previous call's leftovers (keep-alive, SSE close) run
                    t0 = time.perf_counter()
                    found = await call()
                    samples[name].append((time.perf_counter() - t0) * 1e3)
                    hits.add(tuple(found))
        server.should_exit = True
    out: dict[str, Any] = {"documents": docs, "runs": runs, "same_hits_every_way": len(hits) == 1}
    out.update({name: stats(values) for name, values in samples.items()})
    layer = round(out["rest_asgi"]["p50_ms"] - out["service"]["p50_ms"], 3)
    out["rest_layer_p50_ms"] = layer
    out["rest_layer_under_1ms_p50"] = layer < 1.0
    out["rest_vs_mcp_p50_ms"] = round(out["rest_http"]["p50_ms"] - out["mcp_http"]["p50_ms"], 3)
    out["load_average"] = _common.load_average()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """REST vs MCP search (100 documents x 60 rounds with ``quick``, else 1,000 x 400)."""
    _common.require_release()
    docs, runs = (100, 60) if quick else (1_000, 400)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MCP_GEMMA_") or k == "REDIS_URL"}
    try:
        with tempfile.TemporaryDirectory(prefix="mcp-gemma-rest-") as tmp:
            return anyio.run(measure, Path(tmp) / "data", docs, runs)
    finally:
        os.environ.update(saved)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 documents x 60 rounds (CI smoke)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))
