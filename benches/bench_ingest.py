"""Ingest throughput end to end vs embedding alone: 1,000 documents of ~1 KB.

    python benches/bench_ingest.py [--quick]

``RagService.ingest_documents`` (validate, chunk in Rust, embed in batches across documents, write
groups of documents in MULTI/EXEC transactions with their change-stream entries, update the
in-memory index) on a private embedded Redis, against ``EmbeddingService.embed`` of exactly the
same chunk texts with the same loaded model. The embedding cache is off and every run uses fresh
texts, so neither side gets free work. Runs alternate; medians are reported.

Target (issue 7): ingest throughput ≥ 0.8× the embedding-only throughput.

Then (``--per-document`` alone, ``--batch`` to leave it out) the common client pattern (issue 18:
≥ 0.9×): a real ``mcp-gemma serve --transport stdio`` subprocess gets one ``ingest_document`` call
per document through an MCP client session, ``--concurrency`` calls in flight (1: one after
another) and then one ``list_documents`` call (which waits until the write-behind queue is written,
so the clock stops when every document is searchable), against ``EmbeddingService.embed`` of the
same chunk texts in this process (cache off, fresh texts) in one call, and one call per document
(the forward passes a server makes that embeds each call's document before it answers).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import anyio

TARGET = 0.8
WORDS = _common.WORDS


def documents(n: int, seed: int) -> list[str]:
    """``n`` distinct ~1 KB documents of sentences."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = []
        while sum(len(s) + 1 for s in sentences) < 1000:
            sentences.append(
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
            )
        docs.append(f"Document {seed}-{i}. " + " ".join(sentences))
    return docs


def _summary(
    n_docs: int, chunks: int, runs: int, ingest_s: list[float], embed_s: list[float], target: float
) -> dict[str, Any]:
    """Throughputs and the ratio against embedding alone (medians over the runs)."""
    return {
        "documents": n_docs,
        "chunks_per_run": chunks,
        "runs": runs,
        "ingest_docs_per_s": round(n_docs / median(ingest_s), 1),
        "embed_only_docs_per_s": round(n_docs / median(embed_s), 1),
        "ingest_s": [round(x, 2) for x in ingest_s],
        "embed_only_s": [round(x, 2) for x in embed_s],
        "ratio_ingest_vs_embed_only": round(median(embed_s) / median(ingest_s), 3),
        "target_ratio": target,
    }


async def _measure(redis_url: str, n_docs: int, runs: int) -> dict[str, Any]:
    from mcp_gemma.embeddings.config import EmbeddingSettings
    from mcp_gemma.embeddings.service import EmbeddingService
    from mcp_gemma.rag.chunking import split
    from mcp_gemma.rag.models import DocumentInput
    from mcp_gemma.rag.service import RagService
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.redis import RedisStore

    settings = load_settings(
        redis_url=redis_url, namespace=f"bench{random.randrange(1 << 30)}", log_level="WARNING"
    )
    store = await RedisStore.open(settings)
    embeddings = EmbeddingService(EmbeddingSettings(cache_size=0))
    rag = RagService(settings, store, embeddings)
    try:
        await embeddings.embed(documents(8, 0))  # load the model
        await rag.list_documents()  # build the (empty) index
        ingest_s, embed_s, chunks = [], [], 0
        for r in range(runs):
            texts = documents(n_docs, 1000 + 2 * r)
            t = time.perf_counter()
            report = await rag.ingest_documents([DocumentInput(text=x) for x in texts])
            ingest_s.append(time.perf_counter() - t)
            assert report.created == n_docs, report.failed[:3]
            chunks = report.chunks

            other = documents(n_docs, 1001 + 2 * r)  # same shape, not yet embedded anywhere
            pieces = [c.text for x in other for c in split(x, settings.rag)]
            t = time.perf_counter()
            await embeddings.embed(pieces)
            embed_s.append(time.perf_counter() - t)
        return _summary(n_docs, chunks, runs, ingest_s, embed_s, TARGET)
    finally:
        await store.close()


async def _send(ingest: Callable[[str], Awaitable[int]], texts: list[str], counts: list[int]) -> None:
    for text in texts:
        counts.append(await ingest(text))


async def _measure_per_document(
    redis_url: str, data_dir: Path, n_docs: int, runs: int, concurrency: int
) -> dict[str, Any]:
    from mcp import Client

    from mcp_gemma.embeddings.config import EmbeddingSettings
    from mcp_gemma.embeddings.service import EmbeddingService
    from mcp_gemma.rag.chunking import split
    from mcp_gemma.settings import load_settings

    settings = load_settings(log_level="WARNING")
    embeddings = EmbeddingService(EmbeddingSettings(cache_size=0))
    await embeddings.embed(documents(8, 0))  # load the model
    params = _common.stdio_server(redis_url, data_dir, f"bench{random.randrange(1 << 30)}")
    ingest_s, embed_s, embed_each_s, chunks = [], [], [], 0
    async with Client(params) as client:

        async def ingest(text: str) -> int:
            res = await client.call_tool("ingest_document", {"text": text})
            if res.is_error or res.structured_content is None:
                raise RuntimeError(f"ingest_document failed: {res.content}")
            return int(res.structured_content["chunks"])

        await ingest(documents(1, 7)[0])  # model load, index build
        for r in range(runs):
            texts = documents(n_docs, 1000 + 2 * r)
            counts: list[int] = []
            t = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for part in range(concurrency):  # each task sends its share, one call at a time
                    tg.start_soon(_send, ingest, texts[part::concurrency], counts)
            # a read waits for what the write-behind queue still holds: the clock stops once every
            # document is written and searchable, not when the last call was acknowledged
            listed = await client.call_tool("list_documents", {"limit": 1})
            ingest_s.append(time.perf_counter() - t)
            if listed.is_error or listed.structured_content is None:
                raise RuntimeError(f"list_documents failed: {listed.content}")
            chunks = sum(counts)

            other = documents(n_docs, 1001 + 2 * r)
            per_doc = [[c.text for c in split(x, settings.rag)] for x in other]
            t = time.perf_counter()
            await embeddings.embed([p for doc in per_doc for p in doc])
            embed_s.append(time.perf_counter() - t)
            # the same forward passes the server makes: one call per document, one after another
            t = time.perf_counter()
            for doc in per_doc:
                await embeddings.embed(doc)
            embed_each_s.append(time.perf_counter() - t)
    return {
        "mode": f"ingest_document per document over stdio, {concurrency} in flight",
        **_summary(n_docs, chunks, runs, ingest_s, embed_s, 0.9),
        # what the server adds over the embedding its calls must do anyway
        "embed_each_document_docs_per_s": round(n_docs / median(embed_each_s), 1),
        "embed_each_document_s": [round(x, 2) for x in embed_each_s],
        "ratio_ingest_vs_embed_each_document": round(median(embed_each_s) / median(ingest_s), 3),
    }


def run(
    quick: bool = False,
    docs: int | None = None,
    runs: int | None = None,
    per_document: bool | None = None,
    concurrency: int = 1,
) -> dict[str, Any]:
    """``per_document``: True for the per-document pattern alone, False for ``ingest_documents``
    alone, None (what ``run_all.py`` asks) for both, the per-document figures under
    ``"per_document"``."""
    _common.require_release()
    from mcp_gemma.store.embedded import EmbeddedRedis

    n_docs = docs or (100 if quick else 1_000)
    runs = runs or (1 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        try:
            if per_document:
                ours = anyio.run(_measure_per_document, server.url, Path(tmp), n_docs, runs, concurrency)
            else:
                ours = anyio.run(_measure, server.url, n_docs, runs)
                if per_document is None:
                    ours["per_document"] = anyio.run(
                        _measure_per_document, server.url, Path(tmp), n_docs, runs, concurrency
                    )
        finally:
            server.release()
    return {"machine": _common.machine(), **ours}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 documents, one run (CI smoke)")
    parser.add_argument("--docs", type=int, default=None, help="documents per run (default 1,000)")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--per-document",
        action="store_true",
        help="only one ingest_document call per document through a stdio MCP session",
    )
    mode.add_argument("--batch", action="store_true", help="only RagService.ingest_documents")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="calls in flight with --per-document (default 1)"
    )
    args = parser.parse_args()
    result = run(
        quick=args.quick,
        docs=args.docs,
        runs=args.runs,
        per_document=True if args.per_document else False if args.batch else None,
        concurrency=args.concurrency,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
