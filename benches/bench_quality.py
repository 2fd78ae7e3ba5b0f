"""Retrieval quality of the search tools on labelled sets, through a real MCP session.

Usage: ``python benches/bench_quality.py [--quick] [--corpora NAME ...]``.

Nine corpora built from text that Python ships (``benches/quality/corpora.py``): prose (the language
reference topics; held out through the sixth tuning round, tuned on since), reference (module and function
docstrings), code (stdlib function sources, docstrings stripped), records (errno, HTTP status,
signal, MIME lines), idle_news (IDLE's change-log entries; held out in the seventh round, tuned on since),
and, **held out** (never used to choose a default), idle_help (IDLE's manual sections, since the seventh
round), idle_history (IDLE's older change-log entries), os_calls (the ``os`` module's functions) and
tk_calls (six ``tkinter`` classes' methods), all three since the eighth. Four query styles on each: a
sentence copied from inside the document, the same with its three rarest words removed, 2-4 keywords and
a paraphrase (the last two hand-written).
Each query is asked through ``search_documents`` (vector), ``hybrid_search`` with all weight on BM25,
RRF, fixed-weight, coverage and default (adaptive) fusion, and ``semantic_search``
(MMR 0.1, the default, and 0), all with ``group_by_document`` and limit 10, and scored by distinct
document: MRR@10, recall@10, nDCG@10.
Quality numbers are deterministic: ``--quick`` asks fewer queries, not different ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import _common  # noqa: E402 - clears OPENBLAS_* before numpy loads

MODES = ["vector", "bm25", "rrf", "weighted", "coverage", "default", "semantic", "semantic_d0"]
MEMORY_MODES = ["vector", "bm25", "no_time", "default"]


async def _run(corpora: list[str] | None, per_style: int | None, memory: bool) -> dict[str, Any]:
    from mcp import Client

    from benches.quality.corpora import load_corpora
    from benches.quality.dialogues import load_dialogues
    from benches.quality.evaluate import evaluate, ingest
    from benches.quality.memory_eval import evaluate_memory, store_dialogues
    from mcp_gemma.server.app import create_server
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.embedded import EmbeddedRedis

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        try:
            for corpus in load_corpora(corpora, per_style=per_style):
                settings = load_settings(
                    data_dir=Path(tmp) / corpus.name, redis_url=redis.url, namespace=f"q{corpus.name}"
                )
                started = time.perf_counter()
                async with Client(create_server(settings)) as client:
                    chunks = await ingest(client, corpus)
                    scores = await evaluate(client, corpus, MODES)
                rag = settings.rag
                out[corpus.name] = {
                    "held_out": corpus.held_out,
                    "docs": len(corpus.docs),
                    "chunks": chunks,
                    "chunking": f"{rag.chunk_size}/{rag.chunk_overlap} {rag.chunk_mode}",
                    "seconds": round(time.perf_counter() - started, 1),
                    "modes": {mode: s.table() for mode, s in scores.items()},
                }
                print_corpus(corpus.name, out[corpus.name])
            if memory:
                turns, questions = load_dialogues(per_dialogue=per_style * 3 if per_style else None)
                settings = load_settings(data_dir=Path(tmp) / "memory", redis_url=redis.url, namespace="qmem")
                started = time.perf_counter()
                async with Client(create_server(settings)) as client:
                    ids = await store_dialogues(client, turns)
                    mem = await evaluate_memory(client, questions, ids, MEMORY_MODES)
                out["memory"] = {
                    "turns": len(turns),
                    "questions": len(questions),
                    "seconds": round(time.perf_counter() - started, 1),
                    "modes": {m: {p: sc.table() for p, sc in parts.items()} for m, parts in mem.items()},
                }
                print_memory(out["memory"])
        finally:
            redis.release()
    return out


def print_corpus(name: str, res: dict[str, Any]) -> None:
    modes = res["modes"]
    styles = list(next(iter(modes.values())))
    held = " (held out)" if res["held_out"] else ""
    print(
        f"\n{name}{held}: {res['docs']} docs, {res['chunks']} chunks ({res['chunking']}), {res['seconds']}s"
    )
    print(f"   MRR@10 {'':<8}" + "".join(f"{s:>14}" for s in styles) + f"{'mean':>8}")
    for mode, table in modes.items():
        values = [table[s]["mrr@10"] for s in styles]
        print(f"   {mode:<15}" + "".join(f"{v:14.3f}" for v in values) + f"{sum(values) / len(values):8.3f}")
    for metric in ("recall@10", "ndcg@10"):
        d = modes["default"]
        print(f"   default {metric:<9}" + "".join(f"{d[s][metric]:14.3f}" for s in styles))


def print_memory(res: dict[str, Any]) -> None:
    print(f"\nmemory: {res['turns']} turns, {res['questions']} questions, {res['seconds']} s")
    for part in ("tuning", "held_out"):
        kinds = list(res["modes"]["default"][part])
        print(f"   recall@10 {part:<9}" + "".join(f"{k:>14}" for k in kinds))
        for mode, parts in res["modes"].items():
            print(f"   {mode:<19}" + "".join(f"{parts[part][k]['recall@10']:14.3f}" for k in kinds))


def run(quick: bool = False, corpora: list[str] | None = None, memory: bool = True) -> dict[str, Any]:
    import anyio

    _common.require_release()
    return anyio.run(_run, corpora, 6 if quick else None, memory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few queries per style (CI smoke)")
    parser.add_argument("--corpora", nargs="*", default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the conversational memory set")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    result = run(args.quick, args.corpora, not args.no_memory)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
