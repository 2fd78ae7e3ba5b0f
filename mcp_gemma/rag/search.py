"""Vector, hybrid (BM25 + vector) and semantic (MMR + context) search over the chunk index."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mcp_gemma import native
from mcp_gemma.aio import overlapped
from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.fusion import LONG_DOCUMENT_QUERY_TERMS, Fusion, adaptive_weight, fuse_scores, is_piece_of
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import DocStore, StoredChunk
from mcp_gemma.rag.index import ChunkIndex, Ids
from mcp_gemma.rag.models import ChunkSpan, Passage, SearchHit, SearchResult, SemanticSearchResult
from mcp_gemma.rag.validation import parse_filter


def mmr(
    query: np.ndarray[Any, Any],
    vectors: np.ndarray[Any, Any],
    relevance: Sequence[float],
    k: int,
    diversity: float,
) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` rows, trading relevance for novelty by ``diversity``."""
    n = len(relevance)
    if n == 0:
        return []
    lam = 1.0 - diversity
    rel = np.asarray(relevance, dtype=np.float32)
    sims = vectors @ vectors.T
    chosen: list[int] = []
    best_to_chosen = np.full(n, -np.inf, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(best_to_chosen), best_to_chosen, 0.0)
        score = lam * rel - (1.0 - lam) * redundancy
        score[~available] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        available[pick] = False
        best_to_chosen = np.maximum(best_to_chosen, sims[pick])
    return chosen


def stitch(pieces: Sequence[StoredChunk]) -> tuple[str, int, int]:
    """Join neighbouring chunks (sorted by offset) into one passage, dropping their overlap."""
    ordered = sorted(pieces, key=lambda c: c.start)
    text = ordered[0].text
    end = ordered[0].end
    for piece in ordered[1:]:
        if piece.start < end:
            text += piece.text[end - piece.start :] if piece.end > end else ""
        else:
            text += " " + piece.text
        end = max(end, piece.end)
    return text, ordered[0].start, end


class Searcher:
    """Turns queries into ranked chunks; reads texts from Redis for the hits only."""

    def __init__(
        self,
        index: ChunkIndex,
        store: DocStore,
        embeddings: EmbeddingService,
        settings: RagSettings,
        settled: Callable[[], Awaitable[None]],
    ) -> None:
        self.index = index
        self.store = store
        self.embeddings = embeddings
        self.settings = settings
        # what a query waits for before the index is read: the write-behind queue written
        self.settled = settled

    def check_limit(self, limit: int) -> None:
        """Refuse a ``limit`` outside 1..rag.max_results."""
        if not 1 <= limit <= self.settings.max_results:
            raise InvalidInputError(f"limit must be between 1 and {self.settings.max_results}, got {limit}")

    async def _prepare(
        self, query: str, limit: int, filter: Mapping[str, Any] | None
    ) -> tuple[np.ndarray[Any, Any], Ids | None, int]:
        if not query.strip():
            raise InvalidInputError("query is empty: say what to look for")
        self.check_limit(limit)
        conditions = parse_filter(filter)
        # the queue check and the index's catch-up (Redis round trips) run while the query is embedded
        qvec, _ = await overlapped(self.embeddings.embed_one(query), self._ready())
        allow = self.index.allow_list(conditions)
        searched = len(self.index.chunks) if allow is None else len(allow)
        return qvec, allow, searched

    async def _ready(self) -> None:
        await self.settled()
        await self.index.sync()

    def _best_per_document(
        self, ranked: Sequence[tuple[int, float]], limit: int
    ) -> tuple[list[tuple[int, float]], dict[int, int]]:
        """The best chunk of each document, in rank order, and how many candidates each document had."""
        best: dict[str, tuple[int, float]] = {}
        counts: dict[str, int] = {}
        for cid, score in ranked:
            ref = self.index.chunks.get(cid)
            if ref is None:
                continue
            counts[ref.doc_id] = counts.get(ref.doc_id, 0) + 1
            best.setdefault(ref.doc_id, (cid, score))
        top = list(best.values())[:limit]
        return top, {cid: counts[self.index.chunks[cid].doc_id] for cid, _ in top}

    def _neighbours(self, cid: int) -> list[ChunkSpan]:
        """Offsets of the chunks just before and after ``cid`` in its document."""
        ref = self.index.chunks.get(cid)
        entry = self.index.docs.get(ref.doc_id) if ref else None
        if ref is None or entry is None:
            return []
        order = entry.head.chunk_ids
        pos = order.index(cid) if cid in order else ref.ordinal
        spans = []
        for other in (order[pos - 1] if pos > 0 else None, order[pos + 1] if pos + 1 < len(order) else None):
            near = self.index.chunks.get(other) if other is not None else None
            if other is not None and near is not None:
                spans.append(ChunkSpan(chunk_id=other, ordinal=near.ordinal, start=near.start, end=near.end))
        return spans

    async def _ranked(
        self, ranked: Sequence[tuple[int, float]], limit: int, group_by_document: bool
    ) -> tuple[list[tuple[int, float]], dict[int, int] | None]:
        """``ranked`` cut to ``limit`` chunks, or to the best chunk of ``limit`` documents."""
        if not group_by_document:
            return list(ranked[:limit]), None
        return self._best_per_document(ranked, limit)

    async def _hits(
        self,
        ranked: Sequence[tuple[int, float]],
        extra: Mapping[int, tuple[float | None, float | None]] | None = None,
        matches: Mapping[int, int] | None = None,
        known: Mapping[int, StoredChunk] | None = None,
    ) -> list[SearchHit]:
        stored = await self._chunks([cid for cid, _ in ranked], known)
        hits = []
        for (cid, score), chunk in zip(ranked, stored, strict=True):
            if chunk is None:  # deleted by another process a moment ago
                continue
            entry = self.index.docs.get(chunk.doc_id)
            vec, kw = extra.get(cid, (None, None)) if extra else (None, None)
            hits.append(
                SearchHit(
                    chunk_id=cid,
                    doc_id=chunk.doc_id,
                    ordinal=chunk.ordinal,
                    score=score,
                    text=chunk.text,
                    start=chunk.start,
                    end=chunk.end,
                    metadata=entry.metadata if entry else {},
                    vector_score=vec,
                    keyword_score=kw,
                    document_matches=matches.get(cid) if matches is not None else None,
                    neighbours=self._neighbours(cid) if matches is not None else None,
                )
            )
        return hits

    async def _chunks(
        self, ids: Sequence[int], known: Mapping[int, StoredChunk] | None
    ) -> list[StoredChunk | None]:
        """The stored chunks ``ids`` (None where gone), taking those this call has read already from
        ``known`` and reading only the rest."""
        known = known or {}
        wanted = [c for c in ids if c not in known]
        read = dict(zip(wanted, await self.store.chunks(wanted, None), strict=True)) if wanted else {}
        return [known[c] if c in known else read[c] for c in ids]

    def _depth(self, limit: int, group_by_document: bool) -> int:
        """Candidates to rank per side: enough for ``limit`` chunks, or for ``limit`` documents."""
        depth = min(limit * self.settings.candidate_factor, max(limit, 1000))
        return depth * self.settings.candidate_factor if group_by_document else depth

    async def vector(
        self,
        query: str,
        *,
        limit: int = 5,
        min_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
        group_by_document: bool = False,
    ) -> SearchResult:
        """Chunks most similar in meaning to ``query`` (or the best chunk of each document)."""
        started = time.perf_counter()
        qvec, allow, searched = await self._prepare(query, limit, filter)
        depth = self._depth(limit, group_by_document) if group_by_document else limit
        ranked = await self.index.vector_search(qvec, depth, allow)
        if min_score is not None:
            ranked = [(c, s) for c, s in ranked if s >= min_score]
        top, matches = await self._ranked(ranked, limit, group_by_document)
        hits = await self._hits(top, {c: (s, None) for c, s in top}, matches)
        return SearchResult(
            query=query,
            mode="vector",
            hits=hits,
            searched_chunks=searched,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def fused(
        self,
        query: str,
        qvec: np.ndarray[Any, Any],
        depth: int,
        allow: Ids | None,
        *,
        keyword_weight: float | None = None,
        fusion: Fusion | None = None,
    ) -> tuple[
        list[tuple[int, float]],
        dict[int, tuple[float | None, float | None]],
        str,
        float | None,
        dict[int, StoredChunk],
    ]:
        """Both rankings fused: ``(ranked, {chunk: (cosine, bm25)}, fusion used, BM25 weight used,
        {chunk: stored chunk} read on the way)``; the last saves the caller reading them again."""
        how = fusion or ("weighted" if keyword_weight is not None else self.settings.fusion)
        vec = await self.index.vector_search(qvec, depth, allow)
        kw = await self.index.keyword_search(query, depth, allow)
        if how == "rrf":
            ranked = native.fuse_rrf([[c for c, _ in vec], [c for c, _ in kw]], self.settings.rrf_k)
            vs, ks = dict(vec), dict(kw)
            return ranked, {c: (vs.get(c), ks.get(c)) for c, _ in ranked}, how, None, {}
        ids = list(dict.fromkeys([c for c, _ in vec] + [c for c, _ in kw]))
        vs = dict(vec)
        missing = [c for c in ids if c not in vs]
        vs.update(zip(missing, self.index.cosines(qvec, missing), strict=True))
        evidence = self.index.keyword_evidence(
            query, ids, kw[0][0] if kw else None, chunk_coverage=how == "coverage"
        )
        read: dict[int, StoredChunk] = {}
        if how == "weighted":
            weight = self.settings.keyword_weight if keyword_weight is None else keyword_weight
        else:
            per_doc = len(self.index.chunks) / max(1, len(self.index.docs))
            piece = await self._piece_of_best(query, kw[0][0] if kw else None, evidence.terms, read)
            weight = adaptive_weight(evidence.coverage, evidence.terms, per_doc, piece)
        cos = [vs[c] for c in ids]
        ranked = fuse_scores(ids, cos, evidence.scores, evidence.bound, weight, evidence.chunk_coverage)
        scores = dict(zip(ids, zip(cos, evidence.scores, strict=True), strict=True))
        fused: dict[int, tuple[float | None, float | None]] = {
            c: (scores[c][0], scores[c][1] or None) for c, _ in ranked
        }
        return ranked, fused, how, round(weight, 4), read

    async def _piece_of_best(
        self, query: str, best: int | None, terms: int, read: dict[int, StoredChunk]
    ) -> bool:
        """Whether a short query is a piece of its best keyword hit's text (:func:`is_piece_of`; the
        adaptive share needs it for queries of at most ``LONG_DOCUMENT_QUERY_TERMS`` terms only, so
        longer ones, and queries without a keyword hit, read nothing). The chunk read goes into
        ``read``."""
        if best is None or not 0 < terms <= LONG_DOCUMENT_QUERY_TERMS:
            return True
        (chunk,) = await self.store.chunks([best], None)
        if chunk is None:  # deleted by another process a moment ago
            return True
        read[best] = chunk
        analyzer = self.settings.bm25_analyzer
        return is_piece_of(native.tokenize(query, analyzer), native.tokenize(chunk.text, analyzer))

    async def hybrid(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        keyword_weight: float | None = None,
        fusion: Fusion | None = None,
        group_by_document: bool = False,
    ) -> SearchResult:
        """BM25 and vector rankings fused (see :mod:`mcp_gemma.fusion`); ``keyword_weight`` fixes the
        BM25 share, else ``fusion`` (default rag.fusion) decides."""
        started = time.perf_counter()
        if keyword_weight is not None and not 0.0 <= keyword_weight <= 1.0:
            raise InvalidInputError(f"keyword_weight must be between 0 and 1, got {keyword_weight}")
        if keyword_weight is not None and fusion not in (None, "weighted"):
            raise InvalidInputError(
                f"keyword_weight applies to fusion='weighted' only; drop it or use fusion='weighted' "
                f"(got fusion={fusion!r})"
            )
        qvec, allow, searched = await self._prepare(query, limit, filter)
        depth = self._depth(limit, group_by_document)
        ranked, scores, how, weight, read = await self.fused(
            query, qvec, depth, allow, keyword_weight=keyword_weight, fusion=fusion
        )
        top, matches = await self._ranked(ranked, limit, group_by_document)
        hits = await self._hits(top, scores, matches, read)
        return SearchResult(
            query=query,
            mode="hybrid",
            hits=hits,
            searched_chunks=searched,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
            fusion=how,
            keyword_weight=weight,
        )

    async def semantic(
        self,
        query: str,
        *,
        limit: int = 5,
        filter: Mapping[str, Any] | None = None,
        diversity: float = 0.1,
        context_chunks: int = 1,
        min_score: float | None = None,
        group_by_document: bool = False,
    ) -> SemanticSearchResult:
        """Diverse (MMR) passages with ``context_chunks`` neighbours on each side stitched in; relevance
        is the hybrid fused score (rag.semantic_candidates = "hybrid") or the cosine ("vector")."""
        started = time.perf_counter()
        if not 0.0 <= diversity <= 1.0:
            raise InvalidInputError(f"diversity must be between 0 and 1, got {diversity}")
        qvec, allow, searched = await self._prepare(query, limit, filter)
        depth = self._depth(limit, group_by_document)
        if self.settings.semantic_candidates == "hybrid":
            ranked, scores, _, _, read = await self.fused(query, qvec, depth, allow)
            if min_score is not None:
                ranked = [(c, s) for c, s in ranked if (scores[c][0] or 0.0) >= min_score]
        else:
            read = {}
            ranked = await self.index.vector_search(qvec, depth, allow)
            if min_score is not None:
                ranked = [(c, s) for c, s in ranked if s >= min_score]
        ranked = ranked[:depth]
        if group_by_document:
            ranked, _ = self._best_per_document(ranked, depth)
        pairs = [(c, s, v) for c, s in ranked if (v := self.index.vector_of(c)) is not None]
        if pairs:
            matrix = np.stack([v for _, _, v in pairs])
            picked = [pairs[i] for i in mmr(qvec, matrix, [s for _, s, _ in pairs], limit, diversity)]
        else:
            picked = []
        windows: list[tuple[int, float, str, list[int]]] = []
        for cid, score, _ in picked:
            ref = self.index.chunks.get(cid)
            entry = self.index.docs.get(ref.doc_id) if ref else None
            if ref is None or entry is None:
                continue
            order = entry.head.chunk_ids
            pos = order.index(cid) if cid in order else ref.ordinal
            lo, hi = max(0, pos - context_chunks), min(len(order), pos + context_chunks + 1)
            windows.append((cid, score, ref.doc_id, order[lo:hi] or [cid]))
        wanted = sorted({c for *_, ids in windows for c in ids})
        texts = {c.chunk_id: c for c in await self._chunks(wanted, read) if c is not None}
        passages = []
        for cid, score, doc_id, ids in windows:
            pieces = [texts[c] for c in ids if c in texts]
            if cid not in texts:
                continue
            text, start, end = stitch(pieces)
            entry = self.index.docs.get(doc_id)
            passages.append(
                Passage(
                    doc_id=doc_id,
                    chunk_id=cid,
                    chunk_ids=[p.chunk_id for p in sorted(pieces, key=lambda p: p.start)],
                    score=score,
                    text=text,
                    start=start,
                    end=end,
                    match_start=texts[cid].start,
                    match_end=texts[cid].end,
                    metadata=entry.metadata if entry else {},
                )
            )
        return SemanticSearchResult(
            query=query,
            passages=passages,
            searched_chunks=searched,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
        )
