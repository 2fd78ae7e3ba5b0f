"""Hybrid fusion, shared by document search and memory recall: one score per candidate from its cosine
similarity and its BM25 score.

Both rankings' candidates are pooled and each gets *both* scores exactly (the cosine of a chunk only
BM25 found, the BM25 score of a chunk only the vector side found), so nothing is fused against a
missing value. BM25 is put on a scale that means the same for every query, its score divided by the
query's upper bound (``Σ idf · (k1 + 1)``), instead of min-max over the candidates, which stretches
the best keyword hit to 1.0 even when it matches one common word.

The default weight is query-adaptive (``fusion = "adaptive"``): the BM25 share is the part of the
query's IDF mass that the best keyword hit contains (:meth:`BM25Index.coverage`), scaled down for
queries of fewer than :data:`SHORT_QUERY_TERMS` terms. A sentence copied from a document is fully
covered by the chunk it came from, so keywords lead; a paraphrase shares few rare words with any
chunk, so meaning leads. Chosen on ``benches/bench_quality.py`` (table and reasons in
``benches/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHORT_QUERY_TERMS = 3


def adaptive_weight(coverage: float, query_terms: int) -> float:
    """The BM25 share for a query whose best keyword hit covers ``coverage`` of its IDF mass."""
    if query_terms <= 0:
        return 0.0
    return float(min(max(coverage, 0.0), 1.0) * min(1.0, query_terms / SHORT_QUERY_TERMS))


def fuse_scores(
    ids: Sequence[int],
    cosine: Sequence[float],
    bm25: Sequence[float],
    bm25_bound: float,
    keyword_weight: float,
) -> list[tuple[int, float]]:
    """``(1 - w) · cosine + w · bm25 / bound`` for every candidate; best first, ties by id."""
    if not ids:
        return []
    cos = np.asarray(cosine, dtype=np.float64)
    kw = np.asarray(bm25, dtype=np.float64)
    scaled = kw / bm25_bound if bm25_bound > 0 else np.zeros_like(kw)
    fused = (1.0 - keyword_weight) * cos + keyword_weight * scaled
    order = sorted(range(len(ids)), key=lambda i: (-fused[i], ids[i]))
    return [(int(ids[i]), float(fused[i])) for i in order]
