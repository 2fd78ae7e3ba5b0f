"""Hybrid fusion, shared by document search and memory recall: one score per candidate from its cosine
similarity and its keyword evidence.

Both rankings' candidates are pooled and each gets *both* scores exactly (the cosine of a chunk only
BM25 found, the BM25 score of a chunk only the vector side found), so nothing is fused against a
missing value. BM25 is put on a scale that means the same for every query, its score divided by the
query's upper bound (``Σ idf · (k1 + 1)``), instead of min-max over the candidates, which stretches
the best keyword hit to 1.0 even when it matches one common word.

The fused score is ``(1 - w) · cosine + w · keyword``. Two named rules:

* ``"adaptive"`` (the default of ``hybrid_search``, ``semantic_search``'s hybrid candidates and memory
  recall; ``rag.fusion``, ``memory.fusion``): ``keyword`` is BM25 / bound.
* ``"coverage"``: ``keyword`` is half BM25 / bound and half the candidate's own *coverage*, the share
  of the query's IDF mass its text holds (:meth:`BM25Index.coverage_many
  <mcp_gemma.native.BM25Index.coverage_many>`: distinct terms, BM25's IDF, a term no document has at the
  highest IDF; term frequency and length ignored), so holding more of the query's rare words counts for
  itself where BM25's term-frequency and length parts would rank a short chunk repeating one word first.

In both the BM25 share ``w`` is query-adaptive: the part of the query's IDF mass that the best keyword
hit contains, scaled down for queries of fewer than :data:`SHORT_QUERY_TERMS` terms. A sentence copied
from a document is fully covered by the chunk it came from, so keywords lead; a paraphrase shares few
rare words with any chunk, so meaning leads. Over long documents a short query's terms meet in chunks
of many documents by chance, so a full keyword match proves less: for a query of at most
:data:`LONG_DOCUMENT_QUERY_TERMS` terms the share is divided by ``1 + LONG_DOCUMENT_DAMPING · (c - 1)``,
``c`` the chunks per document of the whole index, also when a filter narrows the search (``tune.py``'s
``acpd:0.05:4``, the seventh round in ``benches/README.md``: prose keyword queries 0.877 -> 0.908
MRR@10 against vector search's 0.911 offline, no tuning cell lower at any of four chunkings; memories
are one unit each, so recall is unchanged). And a query of at most that many terms that is not a piece
of its best keyword hit's text (:func:`is_piece_of`: its tokens in order, each within
:data:`PIECE_GAP` of the one before) is words *about* the text, typed by a reader, not a fragment of
it, so a full keyword match proves less: its share is multiplied by :data:`NOT_A_PIECE_FACTOR`
(``tune.py``'s ``frag:0.6:5:4``, the eighth round: keyword queries on IDLE's change log 0.790 -> 0.833
against vector search's 0.826; held out, on IDLE's manual and older change log and the os and
tkinter functions, it passes all 16 cells, where the seventh round's rule trailed vector search on
tkinter keyword queries by 0.023). Document
search only: memory recall does not read the hit's text and was not measured with it, so it keeps
the share without this factor.

Why ``"adaptive"`` stays the default (``benches/README.md``, "Adopted?"): ``"coverage"`` is
``benches/quality/tune.py``'s ``covfuse:0.5:99``, fixed before the held-out prose corpus was checked,
and is better on the benchmark's means (tuning MRR@10 0.8484 -> 0.8509 with no cell below the better
single retriever; prose, then held out, 0.838 -> 0.846 through MCP, its keyword gap to vector search
0.034 -> 0.021), but on the 50 stdlib paraphrases of ``tests/rag/test_quality.py`` it trails vector search by
0.018 MRR (one query from rank 1 to 2; "adaptive" 0.008), which breaks the bar that hybrid search
never loses to its best part by more than 0.01. On conversations (memory recall) it is no better.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

SHORT_QUERY_TERMS = 3
LONG_DOCUMENT_QUERY_TERMS = 4
LONG_DOCUMENT_DAMPING = 0.05
"""For a query of at most ``LONG_DOCUMENT_QUERY_TERMS`` distinct terms the BM25 share is divided by
``1 + LONG_DOCUMENT_DAMPING · (chunks per document - 1)``, counted over the whole index."""
NOT_A_PIECE_FACTOR = 0.6
"""For a query of at most ``LONG_DOCUMENT_QUERY_TERMS`` distinct terms that is not a piece of its best
keyword hit's text (:func:`is_piece_of`), the BM25 share is multiplied by this."""
PIECE_GAP = 5
"""How far apart (in tokens) consecutive query tokens may be in a text the query is a piece of."""
COVERAGE_SHARE = 0.5
"""Share of the chunk's coverage in the keyword evidence of ``fusion="coverage"`` (BM25 / bound: the rest)."""

Fusion = Literal["adaptive", "coverage", "weighted", "rrf"]


def adaptive_weight(
    coverage: float, query_terms: int, chunks_per_document: float = 1.0, piece_of_text: bool = True
) -> float:
    """The BM25 share for a query whose best keyword hit covers ``coverage`` of its IDF mass, in a
    collection of ``chunks_per_document`` chunks per document on average (1 for memories);
    ``piece_of_text``: whether the query is a piece of that hit's text (:func:`is_piece_of`)."""
    if query_terms <= 0:
        return 0.0
    weight = min(max(coverage, 0.0), 1.0) * min(1.0, query_terms / SHORT_QUERY_TERMS)
    if query_terms <= LONG_DOCUMENT_QUERY_TERMS:
        if chunks_per_document > 1.0:
            weight /= 1.0 + LONG_DOCUMENT_DAMPING * (chunks_per_document - 1.0)
        if not piece_of_text:
            weight *= NOT_A_PIECE_FACTOR
    return float(weight)


def is_piece_of(query_tokens: Sequence[str], text_tokens: Sequence[str], gap: int = PIECE_GAP) -> bool:
    """Whether every query token occurs in ``text_tokens`` in the query's order, each within ``gap``
    positions after the one before (the first anywhere): a piece of the text, such as a sentence
    copied from it with words left out, rather than words about it. No tokens: no."""
    if not query_tokens or not text_tokens:
        return False
    where: dict[str, list[int]] = {}
    for i, token in enumerate(text_tokens):
        where.setdefault(token, []).append(i)
    for start in where.get(query_tokens[0], []):
        at = start
        for token in query_tokens[1:]:
            at = next((i for i in where.get(token, []) if at < i <= at + gap), -1)
            if at < 0:
                break
        else:
            return True
    return False


def fuse_scores(
    ids: Sequence[int],
    cosine: Sequence[float],
    bm25: Sequence[float],
    bm25_bound: float,
    keyword_weight: float,
    coverage: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """``(1 - w) · cosine + w · keyword`` for every candidate; best first, ties by id.

    ``keyword`` is ``bm25 / bound``, or with ``coverage`` (each candidate's share of the query's IDF
    mass, ``fusion="coverage"``) ``COVERAGE_SHARE · coverage + (1 - COVERAGE_SHARE) · bm25 / bound``.
    """
    if not ids:
        return []
    cos = np.asarray(cosine, dtype=np.float64)
    kw = np.asarray(bm25, dtype=np.float64)
    scaled = kw / bm25_bound if bm25_bound > 0 else np.zeros_like(kw)
    if coverage is not None:
        cover = np.asarray(coverage, dtype=np.float64)
        if cover.shape != scaled.shape:
            raise ValueError(f"got {len(cover)} coverages for {len(scaled)} candidates")
        scaled = COVERAGE_SHARE * cover + (1 - COVERAGE_SHARE) * scaled
    fused = (1.0 - keyword_weight) * cos + keyword_weight * scaled
    order = sorted(range(len(ids)), key=lambda i: (-fused[i], ids[i]))
    return [(int(ids[i]), float(fused[i])) for i in order]
