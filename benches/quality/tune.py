"""Tuning harness for the adaptive BM25 share (``mcp_gemma/fusion.py``): candidate weight rules scored
offline (the parts of ``offline.py``) on the tuning corpora only (``TUNING``).

For each rule it prints the mean MRR@10 over the corpus x style cells, the worst cell's margin
against the better of vector and BM25 alone, and the worst cell's change against today's default;
``--chunkings`` repeats that at other chunk sizes (a rule must not only work at one). The held-out
corpus is never loaded unless ``--held-out RULE ...`` names the rules to check on it, and then only
its per-style means are printed (no per-query result).

``--long-docs`` scores on a long-document variant of two tuning corpora instead (each module's documents
joined into one, relevance mapped to the module; see :func:`by_module`).

The third round's rules (``dcover``, ``mcover``, ``didf``, ``docbm``, ``cpd``, ``acpd``, ``kacpd``,
``samedoc``, ``agree``) look at document-level statistics the index knows without a query's answer:
the IDF over documents, BM25 of a document as one field, chunks per document, how many of the top BM25
chunks one document holds, and whether BM25's top document is among the vector's top k (results in
``benches/README.md``, "The held-out keyword cell, third round").

Fifth round (``--long-corpora``: the long tuning corpora ``readmes`` and ``npdocs`` of
``corpora.py``): the two candidates fixed before prose was checked are ``covfuse:0.5:99`` and
``covfuse:0.75:99`` (keyword evidence = that share of the chunk's IDF coverage plus the rest of BM25 /
bound, for every query; today's weight). ``covfuse:0.5:99`` is ``hybrid_search``'s
``fusion="coverage"`` and ``default`` its default, ``fusion="adaptive"`` (``benches/quality/parity.py``
checks that the server ranks as these rules do).

Sixth round: the long tuning corpora also carry ``keyword_hand``, hand-written keyword queries (a
fifth style, scored as its own cell; ``corpora.py``, :func:`~benches.quality.corpora.hand_keyword_queries`).

Seventh round: prose joins the tuning corpora (its keyword cell was the one the bar failed); the held-out
corpora are ``idle_help`` and ``idle_news``, whose queries were written before this round's first run.
On the four tuning corpora 22 of the 400 rules pass the bar at 800/100, all of them the third round's
long-document factors. The two candidates fixed before the held-out corpora were loaded: ``acpd:0.05:4``
(the share of a query of at most 4 terms divided by 1 + 0.05 (chunks per document in the collection - 1);
never below the old default on any tuning cell at 400/50, 600/100, 800/100 or 1200/150) and ``acpd:0.1:4``
(the best tuning mean with no cell below the better single retriever at 800/100).

Eighth round: ``idle_news`` joins the tuning corpora (its keyword cell was the one the bar failed, -0.036)
and new sets, written before they were first ranked, are held out with ``idle_help``: ``idle_history``,
``os_calls`` and (after the first candidates) ``tk_calls``. First signal: ``agacpd`` / ``agacpdc`` multiply
the default's share by a factor when BM25's top document is not among the vector's top k; the candidates
``agacpdc:1:0.8:4`` and ``agacpdc:1:0.7:4`` failed os_calls rare_removed held out. Second signal:
``frag`` / ``fragc`` multiply it when a short query is not a piece of its best BM25 chunk
(:func:`in_order`); of the candidates ``frag:0.6:5:4`` and ``fragc:0.6:1:4``, fixed before the held-out
sets were loaded, ``frag:0.6:5:4`` passes all 16 held-out cells and is the default since.

Usage: ``python -m benches.quality.tune [--rules RULE ...] [--cells] [--chunkings 800/100 400/50 ...]
[--long-docs]`` and ``python -m benches.quality.tune --held-out default RULE``. ``--list`` lists the
rule names.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from benches.quality.corpora import LONG_CORPUS_NAMES, Corpus, Doc, Query, load_corpora
from benches.quality.offline import Built, build, doc_ranking, embedder, metrics
from mcp_gemma import native
from mcp_gemma.fusion import is_piece_of
from mcp_gemma.rag.config import RagSettings

# Prose was held out through the sixth round; from the seventh it is tuned on and IDLE's manual and
# change log (written for that purpose, corpora.py) are held out. From the eighth the change log is tuned
# on and IDLE's older change log and the os module's functions (written before that round) are held out.
TUNING = ("reference", "code", "records", "prose", "idle_news")
HELD_OUT = ("idle_help", "idle_history", "os_calls", "tk_calls")
STYLES = ("verbatim", "rare_removed", "keyword", "paraphrase", "keyword_hand")  # the last: long corpora only
ANALYZER: Literal["plain", "english"] = "plain"  # rag.bm25_analyzer's default
DEPTH = 250  # what hybrid_search ranks per side for limit 10 with group_by_document
F64 = npt.NDArray[np.float64]


@dataclass
class Q:
    """Everything a weight rule may look at for one query (all of it known to the server at query time)."""

    style: str
    relevant: tuple[str, ...]
    ids: npt.NDArray[np.int64]  # candidates: both rankings pooled
    docs: list[str]  # each candidate's document
    cos: F64
    bm: F64  # exact BM25 of each candidate
    bound: float
    cover: F64  # share of the query's IDF mass each candidate holds
    best_cover: float  # that of the best keyword hit (today's signal)
    n_terms: int
    stop_words: int  # query terms the English analyzer drops
    doc_cover: dict[str, float]  # share of the query's IDF mass anywhere in the document
    n_chunks: int
    # Third round: document-level statistics (all known to the index without the query's answer)
    mult: F64  # each distinct query term's count in the query
    tfn: F64  # candidates x distinct terms: BM25's tf part, tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))
    idf_chunk: F64  # each distinct term's IDF over chunks (0 for a term no chunk has)
    idf_doc: F64  # the same over documents (a document holds a term if one of its chunks does)
    cidf_chunk: F64  # coverage weights over chunks (a term nowhere weighs the highest IDF)
    cidf_doc: F64  # the same over documents
    best: int  # position in ids of the best BM25 chunk (-1: none)
    vec_docs: list[str]  # documents in vector order (best chunk each)
    bm_docs: list[str]  # documents in BM25 order
    doc_chunks: dict[str, int]  # chunks of each candidate's document
    avg_doc_chunks: float  # chunks per document in the collection
    doc_tfn: dict[str, F64]  # per document as one field: the tf part over distinct terms
    # Eighth round: the query's tokens and the best BM25 chunk's, in order (is the query a piece of it?)
    q_tokens: list[str]
    best_tokens: list[str]


@dataclass
class DocStats:
    """Per-collection counts for the document-level signals."""

    chunk_tf: list[dict[str, int]]
    chunk_len: list[int]
    doc_tf: dict[str, dict[str, int]]
    doc_len: dict[str, int]
    doc_df: dict[str, int]
    doc_chunks: dict[str, int]


def doc_stats(built: Built) -> DocStats:
    chunk_tf: list[dict[str, int]] = []
    chunk_len: list[int] = []
    doc_tf: dict[str, dict[str, int]] = {}
    doc_len: dict[str, int] = {}
    doc_chunks: dict[str, int] = {}
    for d, text in zip(built.chunk_doc, built.chunk_text, strict=True):
        toks = native.tokenize(text, ANALYZER)
        tf: dict[str, int] = {}
        for t in toks:
            tf[t] = tf.get(t, 0) + 1
        chunk_tf.append(tf)
        chunk_len.append(len(toks))
        acc = doc_tf.setdefault(d, {})
        for t, v in tf.items():
            acc[t] = acc.get(t, 0) + v
        doc_len[d] = doc_len.get(d, 0) + len(toks)
        doc_chunks[d] = doc_chunks.get(d, 0) + 1
    doc_df: dict[str, int] = {}
    for tf in doc_tf.values():
        for t in tf:
            doc_df[t] = doc_df.get(t, 0) + 1
    return DocStats(chunk_tf, chunk_len, doc_tf, doc_len, doc_df, doc_chunks)


def _idf(n: int, df: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _tf_part(tf: int, length: int, avg: float) -> float:
    k1, b = RagSettings().bm25_k1, RagSettings().bm25_b
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg)) if tf else 0.0


def query_features(
    built: Built,
    qvec: npt.NDArray[np.float32],
    text: str,
    style: str,
    relevant: tuple[str, ...],
    doc_terms: dict[str, set[str]],
    stats: DocStats,
) -> Q:
    sims = built.matrix @ qvec
    vtop = np.argsort(-sims, kind="stable")[:DEPTH]
    bm = built.bm25[ANALYZER]
    kid, _ = bm.search(text, DEPTH)
    ids = np.asarray(list(dict.fromkeys([*vtop.tolist(), *kid.astype(np.int64).tolist()])), dtype=np.int64)
    n = len(built.chunk_text)
    df = built.df[ANALYZER]
    terms = set(native.tokenize(text, ANALYZER))
    idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in terms}
    mass = sum(idf.values()) or 1.0
    chunk_terms = built.terms[ANALYZER]
    docs = [built.chunk_doc[int(c)] for c in ids]
    tokens = native.tokenize(text, ANALYZER)
    uterms = list(dict.fromkeys(tokens))
    n_docs = len(stats.doc_tf)
    avg_chunk = sum(stats.chunk_len) / max(len(stats.chunk_len), 1)
    avg_doc = sum(stats.doc_len.values()) / max(n_docs, 1)
    vec_order = np.argsort(-sims, kind="stable")
    pos = {int(c): i for i, c in enumerate(ids)}
    return Q(
        style=style,
        relevant=relevant,
        ids=ids,
        docs=docs,
        cos=sims[ids].astype(np.float64),
        bm=bm.scores(text, ids.astype(np.uint64)).astype(np.float64),
        bound=float(bm.max_score(text)),
        cover=np.asarray([sum(v for t, v in idf.items() if t in chunk_terms[int(c)]) / mass for c in ids]),
        best_cover=built.coverage(ANALYZER, text, int(kid[0])) if len(kid) else 0.0,
        n_terms=len(terms),
        stop_words=sum(1 for t in terms if not native.tokenize(t, "english")),
        doc_cover={d: sum(v for t, v in idf.items() if t in doc_terms[d]) / mass for d in set(docs)},
        n_chunks=n,
        mult=np.asarray([tokens.count(t) for t in uterms], dtype=np.float64),
        tfn=np.asarray(
            [
                [
                    _tf_part(stats.chunk_tf[int(c)].get(t, 0), stats.chunk_len[int(c)], avg_chunk)
                    for t in uterms
                ]
                for c in ids
            ],
            dtype=np.float64,
        ).reshape(len(ids), len(uterms)),
        idf_chunk=np.asarray([_idf(n, df[t]) if df.get(t) else 0.0 for t in uterms]),
        idf_doc=np.asarray([_idf(n_docs, stats.doc_df[t]) if stats.doc_df.get(t) else 0.0 for t in uterms]),
        cidf_chunk=np.asarray([_idf(n, df.get(t, 0)) for t in uterms]),
        cidf_doc=np.asarray([_idf(n_docs, stats.doc_df.get(t, 0)) for t in uterms]),
        best=pos[int(kid[0])] if len(kid) else -1,
        vec_docs=list(dict.fromkeys(built.chunk_doc[int(c)] for c in vec_order[:DEPTH])),
        bm_docs=list(dict.fromkeys(built.chunk_doc[int(c)] for c in kid)),
        doc_chunks={d: stats.doc_chunks[d] for d in set(docs)},
        avg_doc_chunks=len(stats.chunk_len) / max(n_docs, 1),
        doc_tfn={
            d: np.asarray([_tf_part(stats.doc_tf[d].get(t, 0), stats.doc_len[d], avg_doc) for t in uterms])
            for d in set(docs)
        },
        q_tokens=tokens,
        best_tokens=native.tokenize(built.chunk_text[int(kid[0])], ANALYZER) if len(kid) else [],
    )


Data = dict[str, tuple[Built, list[Q]]]


LONG_DOCS = ("reference", "code")


def by_module(corpus: Corpus) -> Corpus:
    """The long-document variant of a tuning corpus: each module's documents joined into one (in corpus
    order), every query's relevant documents mapped to their modules; no query text changes. Long
    documents that share their vocabulary are the held-out prose's situation."""
    module: dict[str, str] = {}
    groups: dict[str, list[Doc]] = {}
    for doc in corpus.docs:
        key = "module:" + str(doc.metadata.get("module") or doc.id.split(":", 1)[1])
        module[doc.id] = key
        groups.setdefault(key, []).append(doc)
    return Corpus(
        name=f"{corpus.name}_by_module",
        kind=corpus.kind,
        held_out=corpus.held_out,
        docs=tuple(
            Doc(id=key, text="\n\n".join(d.text for d in docs), metadata={"title": key})
            for key, docs in groups.items()
        ),
        queries=tuple(
            Query(q.text, tuple(dict.fromkeys(module[r] for r in q.relevant)), q.style)
            for q in corpus.queries
        ),
    )


def load(names: Sequence[str], chunk: int = 800, overlap: int = 100, long_docs: bool = False) -> Data:
    rag = RagSettings(chunk_size=chunk, chunk_overlap=overlap)
    embed = embedder()
    out: Data = {}
    corpora = load_corpora(list(names))
    for corpus in [by_module(c) for c in corpora] if long_docs else corpora:
        built = build(corpus, rag, embed)
        doc_terms: dict[str, set[str]] = {}
        for d, ts in zip(built.chunk_doc, built.terms[ANALYZER], strict=True):
            doc_terms.setdefault(d, set()).update(ts)
        qvecs = embed([q.text for q in corpus.queries])
        stats = doc_stats(built)
        out[corpus.name] = (
            built,
            [
                query_features(built, qvecs[i], q.text, q.style, q.relevant, doc_terms, stats)
                for i, q in enumerate(corpus.queries)
            ],
        )
    return out


# --------------------------------------------------------------------------------------------
# Signals and rules. A rule maps a query to (candidate ids, fused score) or, for the document-level
# ones, to a score per document.
# --------------------------------------------------------------------------------------------


def base_weight(q: Q) -> float:
    """Today's default: coverage of the best keyword hit x min(1, terms / 3)."""
    return 0.0 if q.n_terms == 0 else q.best_cover * min(1.0, q.n_terms / 3)


def linear(q: Q, w: float) -> F64:
    nb = q.bm / q.bound if q.bound > 0 else np.zeros_like(q.bm)
    return (1 - w) * q.cos + w * nb


def near_best_docs(q: Q, within: float, by: str) -> int:
    """Distinct documents with a candidate within ``within`` (relative) of the best BM25 score or
    coverage: how many documents the keyword evidence cannot tell apart."""
    values = q.bm if by == "bm" else q.cover
    top = float(values.max()) if len(values) else 0.0
    if top <= 0:
        return 0
    return len({d for d, v in zip(q.docs, values, strict=True) if v >= top * (1 - within) - 1e-12})


def full_match_docs(q: Q) -> int:
    """Distinct candidate documents with a chunk that holds every query term."""
    return len({d for d, c in zip(q.docs, q.cover, strict=True) if c >= 1 - 1e-9})


def doc_cos_margin(q: Q, k: int) -> float:
    """Cosine of the best document's best chunk minus that of the k-th document."""
    best: dict[str, float] = {}
    for d, v in zip(q.docs, q.cos, strict=True):
        best[d] = max(best.get(d, -1.0), float(v))
    top = sorted(best.values(), reverse=True)
    return top[0] - top[min(k, len(top)) - 1] if top else 0.0


def damp(n: int, a: float) -> float:
    return 1.0 / (1.0 + a * max(n - 1, 0))


def damp_log(n: int, a: float) -> float:
    return 1.0 / (1.0 + a * math.log(max(n, 1)))


Weight = Callable[[Q], float]


def _scaled(factor: Callable[[Q], float]) -> Weight:
    """Today's share times ``factor(q)``."""
    return lambda q: base_weight(q) * factor(q)


def _capped(cap: float, applies: Callable[[Q], bool]) -> Weight:
    return lambda q: min(base_weight(q), cap) if applies(q) else base_weight(q)


def _near(by: str, within: float, a: float, f: Callable[[int, float], float]) -> Weight:
    return _scaled(lambda q: f(near_best_docs(q, within, by), a))


def _full(a: float, terms: int, f: Callable[[int, float], float]) -> Weight:
    return _scaled(lambda q: f(full_match_docs(q), a) if q.n_terms <= terms else 1.0)


def _short(terms: int) -> Callable[[Q], bool]:
    return lambda q: q.n_terms <= terms


def _keyword_style(terms: int) -> Callable[[Q], bool]:
    return lambda q: q.n_terms <= terms and q.stop_words == 0


def _ramp(length: int) -> Weight:
    return lambda q: 0.0 if q.n_terms == 0 else q.best_cover * min(1.0, q.n_terms / length)


def _saturating(k: float) -> Weight:
    return lambda q: q.best_cover * q.n_terms / (q.n_terms + k)


def _power(p: float) -> Weight:
    return lambda q: 0.0 if q.n_terms == 0 else q.best_cover**p * min(1.0, q.n_terms / 3)


def _specific(c: float, k1: float) -> Weight:
    return _scaled(lambda q: min(1.0, q.bound / (k1 + 1) / (c * math.log(max(q.n_chunks, 2)))))


def _vector_confident(k: int, scale: float, alpha: float) -> Weight:
    return _scaled(lambda q: 1 - alpha * min(1.0, doc_cos_margin(q, k) / scale))


@cache
def weight_rules() -> dict[str, Weight]:
    """Every candidate that only changes the BM25 share of ``(1 - w) cos + w bm25 / bound``."""
    out: dict[str, Weight] = {"vector": lambda q: 0.0, "bm25": lambda q: 1.0, "default": base_weight}
    # (1) ambiguity: the share x f(n), n = documents about as good as the best keyword hit
    for by in ("bm", "cover"):
        for within in (0.0, 0.05, 0.1, 0.2):
            for a in (0.05, 0.1, 0.2, 0.5):
                out[f"near:{by}:{within}:inv:{a}"] = _near(by, within, a, damp)
                out[f"near:{by}:{within}:log:{a}"] = _near(by, within, a, damp_log)
    # (1') ambiguity of a full match: documents holding every term, for queries of at most T terms
    for a in (0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.5, 1.0):
        for t in (3, 4, 5, 99):
            out[f"full:inv:{a}:{t}"] = _full(a, t, damp)
            out[f"full:log:{a}:{t}"] = _full(a, t, damp_log)
    # (3) an upper cap on the share of queries of at most T terms (T = 99: every query)
    for t in (3, 4, 5, 6, 99):
        for cap in (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
            out[f"cap:{t}:{cap}"] = _capped(cap, _short(t))
    # (3') the same cap for keyword-style queries only (no stop word)
    for t in (3, 4, 5):
        for cap in (0.5, 0.6, 0.7, 0.8):
            out[f"kwcap:{t}:{cap}"] = _capped(cap, _keyword_style(t))
    # other length factors: min(1, terms / L), terms / (terms + k)
    for length in (4, 5, 6):
        out[f"ramp:{length}"] = _ramp(length)
    for k in (0.25, 0.5, 0.75, 1.0):
        out[f"sat:{k}"] = _saturating(k)
    # a partial match counts for less: coverage ** p
    for p in (1.5, 2.0, 3.0):
        out[f"pow:{p}"] = _power(p)
    # (4) specificity: the query's IDF mass (bound / (k1 + 1)) against ln N, where one chunk is expected
    # to hold every term by chance (independent terms: N x prod(df / N) = 1)
    for c in (0.75, 1.0, 1.25, 1.5, 2.0):
        out[f"spec:{c}"] = _specific(c, RagSettings().bm25_k1)
    # (4) vector confidence: the best document's cosine margin over the k-th lowers the share
    for k in (2, 5, 10):
        for scale in (0.05, 0.1, 0.2):
            for alpha in (0.3, 0.5):
                out[f"vconf:{k}:{scale}:{alpha}"] = _vector_confident(k, scale, alpha)
    out.update(third_round_weights())
    return out


# Third round: document-level signals (the README's "The held-out keyword cell, third round").


def idf_cover(q: Q, i: int, by_doc: bool) -> float:
    """Share of the query's IDF mass (over chunks or over documents) that candidate ``i`` holds."""
    if i < 0:
        return 0.0
    weights = q.cidf_doc if by_doc else q.cidf_chunk
    total = float(weights.sum())
    return float((q.tfn[i] > 0) @ weights) / total if total > 0 else 0.0


def doc_weight(q: Q) -> float:
    """Today's rule with the coverage's IDF counted over documents instead of chunks."""
    return 0.0 if q.n_terms == 0 else idf_cover(q, q.best, True) * min(1.0, q.n_terms / 3)


def top_doc_share(q: Q, k: int) -> float:
    """Share of the best ``k`` BM25 chunks that belong to the best one's document."""
    order = np.lexsort((q.ids, -q.bm))[:k]
    top = q.docs[int(order[0])]
    return sum(1 for i in order if q.docs[int(i)] == top) / len(order)


def _mixed_cover(lam: float) -> Weight:
    """Coverage with the IDF over chunks and over documents mixed (lam: the documents' part)."""
    return lambda q: (
        0.0
        if q.n_terms == 0
        else ((1 - lam) * q.best_cover + lam * idf_cover(q, q.best, True)) * min(1.0, q.n_terms / 3)
    )


def _doc_cover_power(p: float) -> Weight:
    return lambda q: 0.0 if q.n_terms == 0 else idf_cover(q, q.best, True) ** p * min(1.0, q.n_terms / 3)


def _agree(k: int, a: float, terms: int) -> Weight:
    """The share x a unless the BM25 top document is among the vector's top k (queries of <= terms)."""

    def w(q: Q) -> float:
        agrees = bool(q.bm_docs) and q.bm_docs[0] in q.vec_docs[:k]
        return base_weight(q) * (1.0 if q.n_terms > terms or agrees else a)

    return w


def _chunks_per_doc(a: float, terms: int, own: bool) -> Weight:
    """The share x 1 / (1 + a (c - 1)) for queries of <= terms; c = the best BM25 chunk's document's
    chunks (own) or the collection's chunks per document."""

    def w(q: Q) -> float:
        if q.n_terms > terms or q.best < 0:
            return base_weight(q)
        c = q.doc_chunks[q.docs[q.best]] if own else q.avg_doc_chunks
        return base_weight(q) / (1.0 + a * (c - 1))

    return w


def _long_doc_unless(keeps: Callable[[Q], bool], a: float, terms: int, per_chunk: bool) -> Weight:
    """``acpd:0.05:4`` (the seventh round's default) x a for a query of at most ``terms`` terms unless
    ``keeps(q)``; ``per_chunk``: x 1 - (1 - a) / c instead, c the collection's chunks per document (the
    full factor for one chunk per document, less over long ones)."""
    long_doc = _chunks_per_doc(0.05, 4, own=False)

    def w(q: Q) -> float:
        if q.n_terms > terms or keeps(q):
            return long_doc(q)
        return long_doc(q) * (1 - (1 - a) / max(q.avg_doc_chunks, 1.0) if per_chunk else a)

    return w


def _agree_long(k: int, a: float, terms: int, per_chunk: bool = False) -> Weight:
    """The share x a unless the BM25 top document is among the vector's top k (:func:`_long_doc_unless`)."""
    return _long_doc_unless(lambda q: bool(q.bm_docs) and q.bm_docs[0] in q.vec_docs[:k], a, terms, per_chunk)


def in_order(q: Q, gap: int) -> bool:
    """Whether the query is a piece of its best BM25 chunk (the server's own test,
    :func:`mcp_gemma.fusion.is_piece_of`)."""
    return is_piece_of(q.q_tokens, q.best_tokens, gap)


def _fragment(a: float, gap: int, terms: int, per_chunk: bool) -> Weight:
    """The share x a for a query that is not a piece of its best BM25 chunk (:func:`in_order`,
    :func:`_long_doc_unless`)."""
    return _long_doc_unless(lambda q: in_order(q, gap), a, terms, per_chunk)


def _same_doc(k: int, a: float) -> Weight:
    return lambda q: base_weight(q) * (1 - a * top_doc_share(q, k))


def third_round_weights() -> dict[str, Weight]:
    out: dict[str, Weight] = {"dcover": doc_weight}
    for lam in (0.25, 0.5, 0.75):
        out[f"mcover:{lam}"] = _mixed_cover(lam)
    for p in (1.5, 2.0):
        out[f"dcover:pow:{p}"] = _doc_cover_power(p)
    # vector and BM25 agree: the BM25 top document among the vector's top k, else the share x a
    for k in (1, 3, 5, 10):
        for a in (0.25, 0.5, 0.75):
            out[f"agree:{k}:{a}"] = _agree(k, a, 99)
            out[f"agree4:{k}:{a}"] = _agree(k, a, 4)
    # chunks per document: the best BM25 chunk's document's own count, or the collection's mean
    for a in (0.02, 0.05, 0.1, 0.2):
        for t in (4, 99):
            out[f"cpd:{a}:{t}"] = _chunks_per_doc(a, t, own=True)
            out[f"acpd:{a}:{t}"] = _chunks_per_doc(a, t, own=False)
    # eighth round: the default's long-document factor, and the share x a when the BM25 top document is
    # not among the vector's top k (queries of at most t terms)
    for k in (1, 2, 3):
        for a in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
            for t in (3, 4):
                out[f"agacpd:{k}:{a}:{t}"] = _agree_long(k, a, t)
                out[f"agacpdc:{k}:{a}:{t}"] = _agree_long(k, a, t, per_chunk=True)
    # eighth round, second signal: the query is not a piece of its best BM25 chunk (in_order)
    for a in (0.5, 0.6, 0.7, 0.8, 0.9):
        for gap in (1, 2, 3, 5):
            for t in (3, 4):
                out[f"frag:{a}:{gap}:{t}"] = _fragment(a, gap, t, per_chunk=False)
                out[f"fragc:{a}:{gap}:{t}"] = _fragment(a, gap, t, per_chunk=True)
    # top-k BM25 chunks from one document: a keyword hit repeated across one document's chunks
    for k in (5, 10):
        for a in (0.3, 0.5):
            out[f"samedoc:{k}:{a}"] = _same_doc(k, a)
    return out


Score = Callable[[Q], F64]


@cache
def score_rules() -> dict[str, Score]:
    """Candidates that change the keyword evidence itself: for queries of at most T terms, a blend of
    BM25 / bound and the chunk's coverage (term frequency and length ignored), today's weight."""

    def covfuse(lam: float, t: int, weight: Weight = base_weight) -> Score:
        def score(q: Q) -> F64:
            w = weight(q)
            nb = q.bm / q.bound if q.bound > 0 else np.zeros_like(q.bm)
            kw = lam * q.cover + (1 - lam) * nb if q.n_terms <= t else nb
            return (1 - w) * q.cos + w * kw

        return score

    out = {f"covfuse:{lam}:{t}": covfuse(lam, t) for lam in (0.25, 0.5, 0.75, 1.0) for t in (4, 99)}
    # seventh round: hybrid_search's fusion="coverage" with the default's long-document factor
    out["covfuse:0.5:99+acpd:0.05:4"] = covfuse(0.5, 99, _chunks_per_doc(0.05, 4, own=False))
    # eighth round: hybrid_search's fusion="coverage" with the default's share (frag:0.6:5:4)
    out["covfuse:0.5:99+frag:0.6:5:4"] = covfuse(0.5, 99, _fragment(0.6, 5, 4, per_chunk=False))
    out.update(third_round_scores())
    return out


def bm25_with(q: Q, idf: F64) -> F64:
    """BM25 / bound of every candidate with the given IDF per distinct term."""
    w = idf * q.mult
    bound = float(w.sum()) * (RagSettings().bm25_k1 + 1)
    return q.tfn @ w / bound if bound > 0 else np.zeros(len(q.ids))


def doc_bm25(q: Q, idf: F64) -> F64:
    """Each candidate's document scored as one field (all its chunks), over document IDF, / bound."""
    w = idf * q.mult
    bound = float(w.sum()) * (RagSettings().bm25_k1 + 1)
    per = {d: float(v @ w) / bound if bound > 0 else 0.0 for d, v in q.doc_tfn.items()}
    return np.asarray([per[d] for d in q.docs])


def third_round_scores() -> dict[str, Score]:
    def make(idf_mix: float, weight: Weight, doc_mix: float = 0.0) -> Score:
        def score(q: Q) -> F64:
            idf = (1 - idf_mix) * q.idf_chunk + idf_mix * q.idf_doc
            kw = bm25_with(q, idf)
            if doc_mix:
                kw = (1 - doc_mix) * kw + doc_mix * doc_bm25(q, q.idf_doc)
            w = weight(q)
            return (1 - w) * q.cos + w * kw

        return score

    out: dict[str, Score] = {}
    for mix in (0.5, 1.0):
        out[f"didf:{mix}"] = make(mix, base_weight)
        out[f"didf:{mix}+dcover"] = make(mix, doc_weight)

    # the share over long documents: x 1 / (1 + a (chunks per document - 1)) for queries of <= t terms
    def per_doc(
        weight: Weight, a: float, t: int, own: bool = False, keyword: bool = False, log: bool = False
    ) -> Weight:
        def w(q: Q) -> float:
            if q.n_terms > t or (keyword and q.stop_words):
                return weight(q)
            cpd = q.doc_chunks[q.docs[q.best]] if own and q.best >= 0 else q.avg_doc_chunks
            return weight(q) / (1.0 + a * (math.log(cpd) if log else cpd - 1))

        return w

    for a in (0.2, 0.3, 0.5, 1.0):
        for t in (3, 4, 5):
            out[f"acpd2:{a}:{t}"] = make(0.0, per_doc(base_weight, a, t))
            out[f"acpd2:{a}:{t}+dcover"] = make(0.0, per_doc(doc_weight, a, t))
            out[f"acpd2:{a}:{t}+didf:0.5+dcover"] = make(0.5, per_doc(doc_weight, a, t))
            out[f"cpd2:{a}:{t}+dcover"] = make(0.0, per_doc(doc_weight, a, t, own=True))
    # the same for keyword-style queries only (no stop word)
    for a in (0.3, 0.5, 1.0, 2.0):
        for t in (3, 4, 5, 99):
            out[f"kacpd:{a}:{t}"] = make(0.0, per_doc(base_weight, a, t, keyword=True))
            out[f"kacpd:{a}:{t}+dcover"] = make(0.0, per_doc(doc_weight, a, t, keyword=True))
            out[f"kacpd:{a}:{t}+didf:0.5+dcover"] = make(0.5, per_doc(doc_weight, a, t, keyword=True))
    for a in (0.5, 1.0, 1.5, 2.0, 3.0):
        for t in (3, 4, 99):
            out[f"kacpdlog:{a}:{t}"] = make(0.0, per_doc(base_weight, a, t, keyword=True, log=True))
    for m in (0.25, 0.5):
        out[f"docbm:{m}"] = make(0.0, base_weight, m)
        out[f"docbm:{m}+dcover"] = make(0.0, doc_weight, m)
        out[f"didf:1.0+docbm:{m}+dcover"] = make(1.0, doc_weight, m)
    return out


DocRule = Callable[[Q], dict[str, float]]


def _best_by_doc(q: Q, values: F64) -> dict[str, float]:
    best: dict[str, float] = {}
    for d, v in zip(q.docs, values, strict=True):
        best[d] = max(best.get(d, -math.inf), float(v))
    return best


@cache
def doc_rules() -> dict[str, DocRule]:
    """(2) document-level keyword evidence: each document's best cosine fused with a document score."""

    def fused(q: Q, kw: dict[str, float]) -> dict[str, float]:
        w = base_weight(q)
        return {d: (1 - w) * c + w * kw[d] for d, c in _best_by_doc(q, q.cos).items()}

    def bounded(q: Q) -> F64:
        return q.bm / q.bound if q.bound > 0 else np.zeros_like(q.bm)

    def doccov(m: float) -> DocRule:
        # best chunk's BM25 / bound blended with the share of the query anywhere in the document
        return lambda q: fused(
            q, {d: (1 - m) * s + m * q.doc_cover[d] for d, s in _best_by_doc(q, bounded(q)).items()}
        )

    out = {f"doccov:{mix}": doccov(mix) for mix in (0.0, 0.25, 0.5, 1.0)}

    def top2(q: Q) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        for d, v in zip(q.docs, bounded(q), strict=True):
            per.setdefault(d, []).append(float(v))
        return fused(q, {d: min(1.0, sum(sorted(v, reverse=True)[:2])) for d, v in per.items()})

    out["doctop2"] = top2
    return out


def ranking(built: Built, q: Q, name: str) -> list[str]:
    weights, scores = weight_rules(), score_rules()
    if name in weights or name in scores:
        score = linear(q, weights[name](q)) if name in weights else scores[name](q)
        order = np.lexsort((built.server_id[q.ids], -score))  # ties: by the server's chunk id
        return doc_ranking(built, [int(q.ids[i]) for i in order])
    docs = doc_rules()[name](q)
    return sorted(docs, key=lambda d: (-docs[d], d))[:10]


def rule_names() -> list[str]:
    return [*weight_rules(), *score_rules(), *doc_rules()]


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

Cells = dict[tuple[str, str], float]


def cells(data: Data, name: str) -> Cells:
    out: Cells = {}
    for corpus, (built, qs) in data.items():
        for style in STYLES:
            rr = [metrics(ranking(built, q, name), q.relevant)[0] for q in qs if q.style == style]
            if rr:  # the long tuning corpora have no paraphrase style
                out[(corpus, style)] = sum(rr) / len(rr)
    return out


def style_metrics(data: Data, name: str, style: str) -> dict[str, tuple[float, float]]:
    """Mean MRR@10 and recall@10 of one rule on each corpus's queries of one style (corpora without it
    are left out)."""
    out: dict[str, tuple[float, float]] = {}
    for corpus, (built, qs) in data.items():
        got = [metrics(ranking(built, q, name), q.relevant)[:2] for q in qs if q.style == style]
        if got:
            out[corpus] = (sum(m[0] for m in got) / len(got), sum(m[1] for m in got) / len(got))
    return out


@dataclass
class Summary:
    mean: float
    worst: float  # worst cell's margin against the better single retriever
    where: tuple[str, str]
    vs_default: float  # worst cell's change against the default
    beats_on_average: bool  # every corpus's mean above both single retrievers'
    cells: Cells


def summarise(data: Data, names: Sequence[str]) -> dict[str, Summary]:
    got = {name: cells(data, name) for name in dict.fromkeys(["vector", "bm25", "default", *names])}
    best = {c: max(got["vector"][c], got["bm25"][c]) for c in got["vector"]}

    def corpus_mean(cell: Cells, corpus: str) -> float:
        got = [cell[(corpus, s)] for s in STYLES if (corpus, s) in cell]
        return sum(got) / len(got)

    out = {}
    for name, cell in got.items():
        margins = {c: cell[c] - best[c] for c in cell}
        where = min(margins, key=lambda c: margins[c])
        out[name] = Summary(
            mean=sum(cell.values()) / len(cell),
            worst=margins[where],
            where=where,
            vs_default=min(cell[c] - got["default"][c] for c in cell),
            beats_on_average=all(
                corpus_mean(cell, k) > max(corpus_mean(got[m], k) for m in ("vector", "bm25")) for k in data
            ),
            cells=cell,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", nargs="*", default=None, help="rules to score (default: all)")
    ap.add_argument("--cells", action="store_true", help="print every cell")
    ap.add_argument("--chunkings", nargs="*", default=["800/100"], help="size/overlap pairs")
    ap.add_argument("--held-out", nargs="*", default=None, help="rules to check on the held-out corpus")
    ap.add_argument("--list", action="store_true", help="list the rule names")
    ap.add_argument(
        "--long-docs", action="store_true", help="score on the by-module variants of reference and code"
    )
    ap.add_argument(
        "--long-corpora",
        action="store_true",
        help="score on the long-document tuning corpora (readmes, npdocs; fifth round)",
    )
    ap.add_argument(
        "--style",
        default=None,
        help="also print each rule's MRR@10 / recall@10 per corpus on this style's queries (first chunking)",
    )
    args = ap.parse_args()
    if args.list:
        print("\n".join(rule_names()))
        return
    names = args.held_out if args.held_out else (args.rules or rule_names())
    unknown = [n for n in names if n not in rule_names()]
    if unknown:
        sys.exit(f"unknown rules: {', '.join(unknown)} (see --list)")
    corpora = (
        HELD_OUT
        if args.held_out
        else LONG_DOCS
        if args.long_docs
        else LONG_CORPUS_NAMES
        if args.long_corpora
        else TUNING
    )
    long_docs = args.long_docs and not args.held_out
    per_chunking = []
    by_style: dict[str, dict[str, tuple[float, float]]] = {}
    for spec in args.chunkings:
        size, overlap = (int(x) for x in spec.split("/"))
        data = load(corpora, size, overlap, long_docs)
        per_chunking.append(summarise(data, names))
        if args.style and not by_style:
            by_style = {n: style_metrics(data, n, args.style) for n in dict.fromkeys(names)}
    print(f"{'rule':<26}" + "".join(f"{c + ': mean/worst/vs default':>36}" for c in args.chunkings))
    first = per_chunking[0]
    for name in sorted(first, key=lambda n: (first[n].worst < -0.01, -first[n].mean)):
        line = f"{name:<26}"
        for summary in per_chunking:
            s = summary[name]
            flag = "" if s.beats_on_average else "!"
            where = f"{s.where[0][:3]}/{s.where[1][:4]}"
            line += f"{s.mean:>17.4f}{flag:1} {s.worst:+.3f} {s.vs_default:+.3f} {where}"
        if args.cells:
            line += "  " + " ".join(f"{v:.3f}" for v in first[name].cells.values())
        print(line)
    if by_style:
        print_style(by_style, args.style, args.chunkings[0])


def print_style(got: dict[str, dict[str, tuple[float, float]]], style: str, chunking: str) -> None:
    """The ``--style`` table: rules by mean MRR@10 over the corpora, best first."""
    corpora = list(next(iter(got.values())))
    print(f"\n{style} queries at {chunking}: MRR@10 / recall@10")
    print(f"{'rule':<26}" + "".join(f"{c:>20}" for c in corpora) + f"{'mean MRR@10':>14}")
    mean = {n: sum(v[0] for v in cells.values()) / len(cells) for n, cells in got.items()}
    for name in sorted(got, key=lambda n: (-mean[n], n)):
        cells = got[name]
        print(
            f"{name:<26}"
            + "".join(f"{cells[c][0]:>12.3f} / {cells[c][1]:.3f}" for c in corpora)
            + f"{mean[name]:>14.4f}"
        )


if __name__ == "__main__":
    main()
