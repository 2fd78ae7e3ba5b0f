"""What docs/SCALING.md rests on: Redis memory per chunk, index load (rebuild from Redis) time per
100k chunks, the in-process index's memory, write throughput of the store, and ingest throughput
end to end with one replica and with two replica processes over one Redis.

    python benches/bench_scale.py [--quick] [--chunks 100000] [--ann] [--no-ingest] [--cluster-url redis+cluster://…]

Part 1 writes ``--chunks`` chunks (documents of 10 chunks of ~60 words, unit vectors drawn at
random: the load path does not care what the numbers are) through ``DocStore.write`` on a private
embedded Valkey (or the cluster given), then times a fresh ``ChunkIndex`` building itself from
Redis as a starting replica does. Part 2 ingests ~1 KB documents with the real MiniLM embedder,
first in one process, then in two processes at once over the same Redis (each its own documents).
The peer is the same work done by one replica, so the ratio is the gain from a second replica on
this machine (CPU bound: the embedding is most of the work).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import anyio

WORDS = _common.WORDS
DIM = 384
CHUNKS_PER_DOC = 10


def rss_mb() -> float:
    """Resident set size of this process now, MB (Linux /proc)."""
    with open("/proc/self/statm", encoding="utf-8") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def _load_part(redis_url: str, n_chunks: int, ann: bool = False) -> dict[str, Any]:
    import numpy as np

    from mcp_gemma.rag.chunking import Chunk
    from mcp_gemma.rag.docstore import DocStore, PreparedDoc
    from mcp_gemma.rag.index import ChunkIndex
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.redis import RedisStore

    settings = load_settings(
        redis_url=redis_url,
        namespace=f"scale{random.randrange(1 << 30)}",
        log_level="WARNING",
        rag={"ann": ann},  # off unless asked: a build in the background would skew the timings
    )
    store = await RedisStore.open(settings)
    rng = np.random.default_rng(7)
    words = random.Random(7)
    docstore = DocStore(store.client, store.keys, settings.rag.change_log_max)
    try:
        before = await store.info()
        used_before = int(before.get("used_memory", 0))
        n_docs = n_chunks // CHUNKS_PER_DOC
        t = time.perf_counter()
        batch = 50
        for start in range(0, n_docs, batch):
            docs = []
            ids = await docstore.reserve_chunk_ids(
                [(f"doc-{i}", CHUNKS_PER_DOC) for i in range(start, min(start + batch, n_docs))]
            )
            for i, chunk_ids in zip(range(start, min(start + batch, n_docs)), ids, strict=True):
                texts = [" ".join(words.choice(WORDS) for _ in range(60)) for _ in range(CHUNKS_PER_DOC)]
                text = "\n".join(texts)
                chunks, at = [], 0
                for o, piece in enumerate(texts):
                    chunks.append(Chunk(ordinal=o, start=at, end=at + len(piece), text=piece))
                    at += len(piece) + 1
                vecs = rng.standard_normal((CHUNKS_PER_DOC, DIM)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                docs.append(PreparedDoc(f"doc-{i}", text, "{}", f"h{i}", chunks, vecs, None, chunk_ids))
            await docstore.write(docs)
        write_s = time.perf_counter() - t
        after = await store.info()
        used_after = int(after.get("used_memory", 0))

        rss0 = rss_mb()
        index = ChunkIndex(docstore, settings.rag, DIM)
        t = time.perf_counter()
        await index.sync()
        load_s = time.perf_counter() - t
        graph_s = None
        if ann:  # a graph is only served once built: from Redis that is a background build
            assert await index.ann.wait_built(3600)
            await index.sync()
            assert index.ann.state == "ready"
            graph_s = time.perf_counter() - t
        rss1 = rss_mb()
        assert len(index.chunks) == n_docs * CHUNKS_PER_DOC, len(index.chunks)

        snap_path = Path(tempfile.mkdtemp(prefix="bench-snap-")) / "index.snapshot"
        index.snapshot_path = snap_path
        t = time.perf_counter()
        snap_bytes = await index.save_snapshot() or 0
        save_s = time.perf_counter() - t
        save_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        built = len(index.chunks)
        del index  # one index in memory at a time, as in a restarted process
        gc.collect()
        restarted = ChunkIndex(docstore, settings.rag, DIM, snapshot_path=snap_path)
        t = time.perf_counter()
        await restarted.sync()
        snap_load_s = time.perf_counter() - t
        assert restarted.loaded_from == "snapshot" and len(restarted.chunks) == built
        assert (
            restarted.ann.state == ("ready" if ann else "off") and restarted.ann.builds == 0
        )  # read, not built
        t = time.perf_counter()
        read_back = len(snap_path.read_bytes())  # the file alone, from the page cache as the load had it
        read_s = time.perf_counter() - t
        assert read_back > snap_bytes
        snap_path.unlink()
        return {
            "ann_graph": ann,
            "restart_from_redis_with_graph_s": round(graph_s, 2) if graph_s is not None else None,
            "snapshot_read_file_s": round(read_s, 2),
            "snapshot_load_in_index_s": round(restarted.rebuild_seconds or 0.0, 2),
            "peak_rss_mb_after_save": round(save_rss, 1),
            "snapshot_save_s": round(save_s, 2),
            "snapshot_mb": round(snap_bytes / 1e6, 1),
            "restart_from_snapshot_s": round(snap_load_s, 2),
            "restart_from_redis_s": round(load_s, 2),
            "chunks": n_docs * CHUNKS_PER_DOC,
            "store_write_chunks_per_s": round(n_docs * CHUNKS_PER_DOC / write_s),
            "redis_bytes_per_chunk": round((used_after - used_before) / (n_docs * CHUNKS_PER_DOC)),
            "index_load_s": round(load_s, 2),
            "index_load_s_per_100k": round(load_s * 100_000 / (n_docs * CHUNKS_PER_DOC), 2),
            "index_rss_mb": round(rss1 - rss0, 1),
            "index_bytes_per_chunk": round((rss1 - rss0) * 1e6 / (n_docs * CHUNKS_PER_DOC)),
            "vector_bytes": int(restarted.vectors.nbytes),
            "int8": bool(restarted.vectors.quantized),
        }
    finally:
        await store.close()


INGEST_CHILD = """
import json, sys, time, anyio
sys.path.insert(0, {benches!r})
from bench_ingest import documents
async def main():
    from mcp_gemma.embeddings.config import EmbeddingSettings
    from mcp_gemma.embeddings.service import EmbeddingService
    from mcp_gemma.rag.models import DocumentInput
    from mcp_gemma.rag.service import RagService
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.redis import RedisStore
    settings = load_settings(redis_url={url!r}, namespace={ns!r}, log_level="WARNING")
    store = await RedisStore.open(settings)
    emb = EmbeddingService(EmbeddingSettings(cache_size=0))
    rag = RagService(settings, store, emb)
    await emb.embed(documents(8, 0)); await rag.list_documents()
    texts = documents({n}, {seed})
    print("ready", flush=True); sys.stdin.readline()
    t = time.perf_counter()
    report = await rag.ingest_documents([DocumentInput(text=x) for x in texts])
    print(json.dumps({{"seconds": time.perf_counter() - t, "created": report.created}}), flush=True)
    await store.close()
anyio.run(main)
"""


def _ingest_part(redis_url: str, n_docs: int, replicas: int) -> dict[str, Any]:
    """``replicas`` processes, each ingesting its own ``n_docs``, started together."""
    ns = f"scale{random.randrange(1 << 30)}"
    procs = []
    for r in range(replicas):
        code = INGEST_CHILD.format(
            benches=str(Path(__file__).resolve().parent), url=redis_url, ns=ns, n=n_docs, seed=5000 + r
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        assert p.stdout is not None
        results.append(json.loads(p.stdout.readline()))
        p.wait(timeout=600)
    wall = time.perf_counter() - t
    assert all(r["created"] == n_docs for r in results), results
    return {
        "replicas": replicas,
        "documents": n_docs * replicas,
        "docs_per_s_total": round(n_docs * replicas / wall, 1),
        "docs_per_s_per_replica": [round(n_docs / r["seconds"], 1) for r in results],
    }


def run(
    quick: bool = False,
    chunks: int | None = None,
    cluster_url: str | None = None,
    docs: int | None = None,
    ann: bool = False,
    ingest: bool = True,
) -> dict[str, Any]:
    _common.require_release()
    from mcp_gemma.store.embedded import EmbeddedRedis

    n_chunks = chunks or (10_000 if quick else 100_000)
    n_docs = docs or (20 if quick else 300)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        server = None
        url = cluster_url
        if url is None:
            server = EmbeddedRedis(Path(tmp) / "redis")
            server.start()
            url = server.url
        try:
            load = anyio.run(_load_part, url, n_chunks, ann)
            one = _ingest_part(url, n_docs, 1) if ingest else None
            two = _ingest_part(url, n_docs, 2) if ingest else None
        finally:
            if server is not None:
                server.release()
    return {
        "machine": _common.machine(),
        "load_average": os.getloadavg(),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
        "store": "cluster" if cluster_url else "embedded",
        **load,
        "ingest_one_replica": one,
        "ingest_two_replicas": two,
        "ratio_two_vs_one": round(two["docs_per_s_total"] / one["docs_per_s_total"], 2)
        if one is not None and two is not None
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="10k chunks, 20 documents per replica (CI smoke)"
    )
    parser.add_argument("--chunks", type=int, default=None, help="chunks for the load part (default 100,000)")
    parser.add_argument("--docs", type=int, default=None, help="documents per replica (default 300)")
    parser.add_argument("--cluster-url", default=None, help="measure on this Redis Cluster instead")
    parser.add_argument(
        "--ann", action="store_true", help="with the HNSW graph (rag.ann = true): its build, and its restore"
    )
    parser.add_argument("--no-ingest", action="store_true", help="the load and restart part only")
    args = parser.parse_args()
    report = run(args.quick, args.chunks, args.cluster_url, args.docs, args.ann, not args.no_ingest)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
