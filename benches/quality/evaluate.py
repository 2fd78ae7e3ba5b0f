"""Retrieval quality through a real MCP session: ingest a corpus, ask its labelled queries through the
search tools, score the document rankings (MRR@10, recall@10, nDCG@10 by distinct document).

Shared by ``benches/bench_quality.py`` (the full tables) and ``tests/rag/test_quality.py`` (a bounded
set with thresholds). Everything goes through ``Client.call_tool``, as a client would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp import Client

from benches.quality.corpora import Corpus

LIMIT = 10

# name -> (tool, extra arguments). "bm25" is hybrid_search with the whole weight on BM25 (its ranking
# is BM25's for every chunk that shares a term); "vector" is search_documents (cosine only).
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "vector": ("search_documents", {}),
    "bm25": ("hybrid_search", {"keyword_weight": 1.0}),
    "rrf": ("hybrid_search", {"fusion": "rrf"}),
    "weighted": ("hybrid_search", {"fusion": "weighted"}),
    "coverage": ("hybrid_search", {"fusion": "coverage"}),
    "default": ("hybrid_search", {}),
    "semantic": ("semantic_search", {}),
    "semantic_d0": ("semantic_search", {"diversity": 0.0}),
    "semantic_d1": ("semantic_search", {"diversity": 0.1}),
    "semantic_d2": ("semantic_search", {"diversity": 0.2}),
}


def metrics(ranking: Sequence[str], relevant: Sequence[str], k: int = LIMIT) -> tuple[float, float, float]:
    """(MRR@k, recall@k, nDCG@k) of a document ranking against the relevant ids (binary relevance)."""
    top = list(ranking[:k])
    rr = next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    recall = len(set(top) & set(relevant)) / len(relevant)
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(top) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return rr, recall, dcg / ideal


def distinct_docs(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Document ids in first-seen order."""
    return list(dict.fromkeys(str(item["doc_id"]) for item in items))


@dataclass
class Scores:
    """Per query style: lists of (MRR, recall, nDCG) per query."""

    per_style: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)

    def add(self, style: str, value: tuple[float, float, float]) -> None:
        self.per_style.setdefault(style, []).append(value)

    def mean(self, style: str, which: int = 0) -> float:
        values = self.per_style[style]
        return sum(v[which] for v in values) / len(values)

    def table(self) -> dict[str, dict[str, float]]:
        return {
            style: {
                "mrr@10": round(self.mean(style, 0), 4),
                "recall@10": round(self.mean(style, 1), 4),
                "ndcg@10": round(self.mean(style, 2), 4),
                "queries": len(self.per_style[style]),
            }
            for style in self.per_style
        }


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A tool call that must succeed; its structured result."""
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool}({args}) failed: {result.content}")
    return dict(result.structured_content)


async def ingest(client: Client, corpus: Corpus, batch: int = 200) -> int:
    """Ingest every document of ``corpus``; the number of chunks written."""
    chunks = 0
    docs = [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in corpus.docs]
    for i in range(0, len(docs), batch):
        report = await call(client, "batch_ingest", {"documents": docs[i : i + batch]})
        if report["failed"]:
            raise RuntimeError(f"ingest failed: {report['failed'][:3]}")
        chunks += int(report["chunks"])
    return chunks


async def evaluate(client: Client, corpus: Corpus, modes: Sequence[str]) -> dict[str, Scores]:
    """Every query of ``corpus`` through every mode of ``modes`` (keys of :data:`MODES`)."""
    out = {mode: Scores() for mode in modes}
    for query in corpus.queries:
        for mode in modes:
            tool, extra = MODES[mode]
            args = {"query": query.text, "limit": LIMIT, "group_by_document": True, **extra}
            res = await call(client, tool, args)
            items = res["passages"] if tool == "semantic_search" else res["hits"]
            out[mode].add(query.style, metrics(distinct_docs(items), query.relevant))
    return out
