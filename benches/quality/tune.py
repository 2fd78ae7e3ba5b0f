"""Tuning harness for the adaptive BM25 share (``mcp_gemma/fusion.py``): candidate weight rules scored
offline (the parts of ``offline.py``) on the three tuning corpora only.

For each rule it prints the mean MRR@10 over the 12 corpus x style cells, the worst cell's margin
against the better of vector and BM25 alone, and the worst cell's change against today's default;
``--chunkings`` repeats that at other chunk sizes (a rule must not only work at one). The held-out
corpus is never loaded unless ``--held-out RULE ...`` names the rules to check on it, and then only
its per-style means are printed (no per-query result).

``--long-docs`` scores on a long-document variant of two tuning corpora instead (each module's documents
joined into one, relevance mapped to the module; see :func:`by_module`).

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

from benches.quality.corpora import Corpus, Doc, Query, load_corpora
from benches.quality.offline import Built, build, doc_ranking, embedder, metrics
from mcp_gemma import native
from mcp_gemma.rag.config import RagSettings

TUNING = ("reference", "code", "records")
HELD_OUT = ("prose",)
STYLES = ("verbatim", "rare_removed", "keyword", "paraphrase")
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


def query_features(
    built: Built,
    qvec: npt.NDArray[np.float32],
    text: str,
    style: str,
    relevant: tuple[str, ...],
    doc_terms: dict[str, set[str]],
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
        out[corpus.name] = (
            built,
            [
                query_features(built, qvecs[i], q.text, q.style, q.relevant, doc_terms)
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
    return out


Score = Callable[[Q], F64]


@cache
def score_rules() -> dict[str, Score]:
    """Candidates that change the keyword evidence itself: for queries of at most T terms, a blend of
    BM25 / bound and the chunk's coverage (term frequency and length ignored), today's weight."""

    def covfuse(lam: float, t: int) -> Score:
        def score(q: Q) -> F64:
            w = base_weight(q)
            nb = q.bm / q.bound if q.bound > 0 else np.zeros_like(q.bm)
            kw = lam * q.cover + (1 - lam) * nb if q.n_terms <= t else nb
            return (1 - w) * q.cos + w * kw

        return score

    return {f"covfuse:{lam}:{t}": covfuse(lam, t) for lam in (0.25, 0.5, 0.75, 1.0) for t in (4, 99)}


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
        order = np.lexsort((q.ids, -score))
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
            out[(corpus, style)] = sum(rr) / len(rr)
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
        return sum(cell[(corpus, s)] for s in STYLES) / len(STYLES)

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
    args = ap.parse_args()
    if args.list:
        print("\n".join(rule_names()))
        return
    names = args.held_out if args.held_out else (args.rules or rule_names())
    unknown = [n for n in names if n not in rule_names()]
    if unknown:
        sys.exit(f"unknown rules: {', '.join(unknown)} (see --list)")
    corpora = HELD_OUT if args.held_out else LONG_DOCS if args.long_docs else TUNING
    long_docs = args.long_docs and not args.held_out
    per_chunking = []
    for spec in args.chunkings:
        size, overlap = (int(x) for x in spec.split("/"))
        per_chunking.append(summarise(load(corpora, size, overlap, long_docs), names))
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


if __name__ == "__main__":
    main()
