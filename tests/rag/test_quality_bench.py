"""The retrieval-quality benchmark's bounded version (``benches/bench_quality.py``), through a real MCP
client session: hybrid search must never lose to its best part.

Quality numbers are deterministic (the same queries, embeddings and ranking every run), so these are
thresholds, not timings. Each corpus asks all its queries (verbatim, rare words removed, keywords,
paraphrase; a subset would be too noisy to hold to 0.01): the queries were written from the documents,
never from what the system returned, and ``idle_help`` (held out since the seventh round),
``idle_history``, ``os_calls`` and ``tk_calls`` (held out since the eighth, when ``idle_news`` became a
tuning corpus) took no part in choosing the defaults.
The bounded part is the set of modes: vector, BM25 and the default only.

The bar (issue 12): on every corpus × style, the default ``hybrid_search`` scores at least the better
of BM25 alone and vector alone, within 0.01 MRR@10 by distinct document, and on average beats both.
It holds on every cell since the eighth round (benches/README.md): keyword queries on IDLE's change
log, the known miss of the seventh (0.790 against vector's 0.826), score 0.833 since short queries that
are not a piece of their best keyword hit's text get less keyword share; the closest cells are
held-out tk_calls keyword (0.731 against vector's 0.738) and tuning idle_news rare_removed (0.962
against BM25's 0.963). One query from rank 1 to 2 moves a cell of 40 queries by 0.0125.
"""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from benches.quality.corpora import CORPUS_NAMES, load_corpora
from benches.quality.dialogues import load_dialogues
from benches.quality.evaluate import evaluate, ingest
from benches.quality.memory_eval import evaluate_memory, store_dialogues
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOLERANCE = 0.01
KNOWN_GAPS: dict[tuple[str, str], float] = {}  # (corpus, style): how far behind its best part it may be


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", CORPUS_NAMES)
async def test_default_hybrid_never_loses_to_its_parts(settings: Settings, name: str) -> None:
    (corpus,) = load_corpora([name])
    with anyio.fail_after(800):
        async with Client(create_server(settings)) as client:
            await ingest(client, corpus)
            scores = await evaluate(client, corpus, ["vector", "bm25", "default"])
    styles = list(scores["default"].per_style)
    assert styles == ["verbatim", "rare_removed", "keyword", "paraphrase"]
    mrr = {mode: {s: scores[mode].mean(s) for s in styles} for mode in scores}
    report = f"{name} MRR@10: {mrr}"
    for style in styles:
        best = max(mrr["vector"][style], mrr["bm25"][style])
        slack = KNOWN_GAPS.get((name, style), TOLERANCE)
        assert mrr["default"][style] >= best - slack, f"{style}: {report}"
    means = {mode: sum(v.values()) / len(v) for mode, v in mrr.items()}
    assert means["default"] > means["vector"], report
    assert means["default"] > means["bm25"], report


@pytest.mark.timeout(900)
async def test_memory_recall_never_loses_to_its_parts(settings: Settings) -> None:
    """Three conversations stored turn by turn; questions about them through recall_memory. Hybrid
    recall (the default) must reach at least the better of vector and BM25 recall@10 on the tuning
    dialogues and on the held-out one."""
    turns, questions = load_dialogues()
    with anyio.fail_after(800):
        async with Client(create_server(settings)) as client:
            ids = await store_dialogues(client, turns)
            scores = await evaluate_memory(client, questions, ids, ["vector", "bm25", "default"])
    for part in ("tuning", "held_out"):
        recall = {mode: scores[mode][part].mean("all") for mode in scores}
        best = max(recall["vector"], recall["bm25"])
        assert recall["default"] >= best - TOLERANCE, f"{part}: {recall}"
