"""Ingest throughput end to end vs embedding alone: 1,000 documents of ~1 KB.

    python benches/bench_ingest.py [--quick]

``RagService.ingest_documents`` (validate, chunk in Rust, embed in batches across documents, write
groups of documents in MULTI/EXEC transactions with their change-stream entries, update the
in-memory index) on a private embedded Redis, against ``EmbeddingService.embed`` of exactly the
same chunk texts with the same loaded model. The embedding cache is off and every run uses fresh
texts, so neither side gets free work. Runs alternate; medians are reported.

Target (issue 7): ingest throughput ≥ 0.8× the embedding-only throughput.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
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
        return {
            "documents": n_docs,
            "chunks_per_run": chunks,
            "runs": runs,
            "ingest_docs_per_s": round(n_docs / median(ingest_s), 1),
            "embed_only_docs_per_s": round(n_docs / median(embed_s), 1),
            "ingest_s": [round(x, 2) for x in ingest_s],
            "embed_only_s": [round(x, 2) for x in embed_s],
            "ratio_ingest_vs_embed_only": round(median(embed_s) / median(ingest_s), 3),
            "target_ratio": TARGET,
        }
    finally:
        await store.close()


def run(quick: bool = False, docs: int | None = None, runs: int | None = None) -> dict[str, Any]:
    _common.require_release()
    from mcp_gemma.store.embedded import EmbeddedRedis

    n_docs = docs or (100 if quick else 1_000)
    runs = runs or (1 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        try:
            ours = anyio.run(_measure, server.url, n_docs, runs)
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
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, docs=args.docs, runs=args.runs), indent=2))


if __name__ == "__main__":
    main()
