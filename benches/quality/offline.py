"""Offline retrieval-quality harness: the server's own parts (Rust chunker, MiniLM embedder, Rust BM25)
assembled without Redis or MCP, so fusion variants can be compared on every corpus in seconds.

Used for tuning (``python -m benches.quality.offline``); the numbers that count come from
``benches/bench_quality.py``, which searches through a real MCP session.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benches.quality.corpora import Corpus, load_corpora
from mcp_gemma import native
from mcp_gemma.rag.chunking import split
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.store.keys import SLOT_GROUPS, group_of

Vec = npt.NDArray[np.float32]
CACHE = Path("/tmp/mcpg-quality-cache")


def embedder() -> Callable[[Sequence[str]], Vec]:
    """The server's default CPU embedder, with a content-hash disk cache for repeated runs."""
    from mcp_gemma.embeddings.minilm import resolve_model_dir
    from mcp_gemma.embeddings.numpy_bert import LeanBertEmbedder
    from mcp_gemma.settings import load_settings

    s = load_settings().embedding
    model = LeanBertEmbedder(
        resolve_model_dir(s.model), s.model, batch_size=s.batch_size, max_seq_length=s.max_seq_length
    )
    CACHE.mkdir(parents=True, exist_ok=True)

    def embed(texts: Sequence[str]) -> Vec:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
        path = CACHE / f"{key}.npy"
        if path.exists():
            loaded: Vec = np.load(path)
            return loaded
        out = model.embed(list(texts))
        np.save(path, out)
        return out

    return embed


@dataclass
class Built:
    corpus: Corpus
    chunk_doc: list[str]
    chunk_text: list[str]
    matrix: Vec
    bm25: dict[str, native.BM25Index]
    terms: dict[str, list[set[str]]]
    df: dict[str, dict[str, int]]
    # the id the server gives each chunk when the corpus is ingested in order (a per-slot-group
    # sequence, ``seq * SLOT_GROUPS + group``): ties between equal scores break by it, as on the server
    server_id: npt.NDArray[np.int64]

    def coverage(self, analyzer: str, query: str, chunk: int) -> float:
        """Share of the query's IDF mass (unknown terms at the highest IDF) found in ``chunk``."""
        n = len(self.chunk_text)
        df = self.df[analyzer]
        q = set(native.tokenize(query, analyzer))  # type: ignore[arg-type]
        if not q:
            return 0.0
        idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in q}
        have = self.terms[analyzer][chunk]
        return sum(v for t, v in idf.items() if t in have) / sum(idf.values())


def build(
    corpus: Corpus,
    rag: RagSettings,
    embed: Callable[[Sequence[str]], Vec],
    title_bm25: bool = False,
    title_embed: bool = False,
) -> Built:
    chunk_doc: list[str] = []
    chunk_text: list[str] = []
    titled: list[str] = []
    for doc in corpus.docs:
        for c in split(doc.text, rag):
            chunk_doc.append(doc.id)
            chunk_text.append(c.text)
            titled.append(f"{doc.metadata.get('title', '')}\n{c.text}")
    matrix = embed(titled if title_embed else chunk_text)
    keyword_text = titled if title_bm25 else chunk_text
    bm25 = {}
    terms: dict[str, list[set[str]]] = {}
    dfs: dict[str, dict[str, int]] = {}
    for analyzer in ("plain", "english"):
        idx = native.BM25Index(rag.bm25_k1, rag.bm25_b, analyzer=analyzer)
        idx.add_many(list(range(len(chunk_text))), keyword_text)
        bm25[analyzer] = idx
        terms[analyzer] = [set(native.tokenize(t, analyzer)) for t in keyword_text]
        df: dict[str, int] = {}
        for ts in terms[analyzer]:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        dfs[analyzer] = df
    return Built(corpus, chunk_doc, chunk_text, matrix, bm25, terms, dfs, server_ids(chunk_doc))


def server_ids(chunk_doc: Sequence[str]) -> npt.NDArray[np.int64]:
    """The chunk ids the server hands out (``DocStore.reserve_chunk_ids``) when documents are ingested in
    order into an empty store: each group's sequence counts from 1."""
    seq: dict[int, int] = {}
    out = np.empty(len(chunk_doc), dtype=np.int64)
    for i, doc_id in enumerate(chunk_doc):
        g = group_of(doc_id)
        seq[g] = seq.get(g, 0) + 1
        out[i] = seq[g] * SLOT_GROUPS + g
    return out


def doc_ranking(built: Built, chunk_ids: Sequence[int], n: int = 10) -> list[str]:
    seen: list[str] = []
    for c in chunk_ids:
        d = built.chunk_doc[c]
        if d not in seen:
            seen.append(d)
            if len(seen) == n:
                break
    return seen


def metrics(ranking: Sequence[str], relevant: Sequence[str]) -> tuple[float, float, float]:
    """MRR@10, recall@10, nDCG@10 (binary relevance) of a document ranking."""
    top = list(ranking[:10])
    rr = next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    rec = len(set(top) & set(relevant)) / len(relevant)
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(top) if d in relevant)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return rr, rec, dcg / idcg


@dataclass
class Candidates:
    ids: npt.NDArray[np.int64]
    cos: Vec
    bm: Vec
    bound: float
    vec_rank: list[int]
    kw_rank: list[int]
    cover: float
    n_terms: int
    gap: float


def candidates(built: Built, qvec: Vec, query: str, depth: int, analyzer: str) -> Candidates:
    sims = built.matrix @ qvec
    vtop = np.argsort(-sims, kind="stable")[:depth]
    bm = built.bm25[analyzer]
    kid, kscores = bm.search(query, depth)
    union = list(dict.fromkeys([*vtop.tolist(), *kid.astype(np.int64).tolist()]))
    ids = np.asarray(union, dtype=np.int64)
    return Candidates(
        ids=ids,
        cos=sims[ids].astype(np.float32),
        bm=bm.scores(query, ids.astype(np.uint64)),
        bound=bm.max_score(query),
        vec_rank=vtop.tolist(),
        kw_rank=kid.astype(np.int64).tolist(),
        cover=built.coverage(analyzer, query, int(kid[0])) if len(kid) else 0.0,
        n_terms=len(set(native.tokenize(query, analyzer))),  # type: ignore[arg-type]
        gap=float(1 - kscores[1] / kscores[0]) if len(kscores) > 1 and kscores[0] > 0 else 1.0,
    )


def _order(ids: npt.NDArray[np.int64], score: npt.NDArray[np.float64]) -> list[int]:
    return [int(ids[i]) for i in np.lexsort((ids, -score))]


def _minmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


def _z(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def fuse(c: Candidates, method: str, w: float, k: float = 60.0) -> list[int]:
    cos = c.cos.astype(np.float64)
    bm = c.bm.astype(np.float64)
    if method == "vector":
        return c.vec_rank
    if method == "bm25":
        return c.kw_rank
    if method == "minmax_lists":  # today's server: each list min-max normalised, missing = 0
        vs = dict(zip(c.vec_rank, cos[: len(c.vec_rank)].tolist(), strict=False))
        pos = {int(i): j for j, i in enumerate(c.ids)}
        vs = {i: float(cos[pos[i]]) for i in c.vec_rank}
        ks = {i: float(bm[pos[i]]) for i in c.kw_rank}
        out: dict[int, float] = {}
        for src, weight in ((vs, 1 - w), (ks, w)):
            if not src:
                continue
            lo, hi = min(src.values()), max(src.values())
            for i, s in src.items():
                out[i] = out.get(i, 0.0) + weight * ((s - lo) / (hi - lo) if hi > lo else 1.0)
        return sorted(out, key=lambda i: (-out[i], i))
    if method == "rrf":
        out = {}
        for r in (c.vec_rank, c.kw_rank):
            weight = (1 - w) if r is c.vec_rank else w
            for rank, i in enumerate(r):
                out[i] = out.get(i, 0.0) + 2 * weight / (k + rank + 1)
        return sorted(out, key=lambda i: (-out[i], i))
    if method == "minmax_union":
        return _order(c.ids, (1 - w) * _minmax(cos) + w * _minmax(bm))
    if method == "z_union":
        return _order(c.ids, (1 - w) * _z(cos) + w * _z(bm))
    if method == "bounded":
        nb = bm / c.bound if c.bound > 0 else bm
        return _order(c.ids, (1 - w) * cos + w * nb)
    if method == "bounded_sqrt":
        nb = np.sqrt(bm / c.bound) if c.bound > 0 else bm
        return _order(c.ids, (1 - w) * cos + w * nb)
    if method.startswith("adaptive"):
        # adaptive:lo:hi:p — BM25 weight from lo to hi as the best keyword hit covers more of the query
        _, lo, hi, p = method.split(":")
        wq = float(lo) + (float(hi) - float(lo)) * c.cover ** float(p)
        nb = bm / c.bound if c.bound > 0 else bm
        return _order(c.ids, (1 - wq) * cos + wq * nb)
    if method.startswith("adlen"):
        # adlen:L:cap — BM25 weight = coverage, scaled down for queries of fewer than L terms
        _, length, cap = method.split(":")
        wq = c.cover * min(1.0, max(c.n_terms, 1) / float(length)) * float(cap)
        nb = bm / c.bound if c.bound > 0 else bm
        return _order(c.ids, (1 - wq) * cos + wq * nb)
    if method.startswith("adgap"):
        # adgap:a — adlen:3 times (a + (1 - a) * gap), gap = 1 - second BM25 score / first
        a = float(method.split(":")[1])
        wq = c.cover * min(1.0, max(c.n_terms, 1) / 3.0) * (a + (1 - a) * c.gap)
        nb = bm / c.bound if c.bound > 0 else bm
        return _order(c.ids, (1 - wq) * cos + wq * nb)
    if method.startswith("adz"):
        _, lo, hi, p = method.split(":")
        wq = float(lo) + (float(hi) - float(lo)) * c.cover ** float(p)
        return _order(c.ids, (1 - wq) * _z(cos) + wq * _z(bm))
    raise ValueError(method)


METHODS: list[tuple[str, str, float]] = [
    ("vector", "vector", 0.0),
    ("bm25", "bm25", 1.0),
    ("minmax_lists", "minmax_lists", 0.3),
    ("minmax_lists", "minmax_lists", 0.5),
    ("minmax_lists", "minmax_lists", 0.7),
    ("rrf", "rrf", 0.5),
    ("minmax_union", "minmax_union", 0.5),
    ("z_union", "z_union", 0.3),
    ("z_union", "z_union", 0.5),
    ("z_union", "z_union", 0.6),
    ("bounded", "bounded", 0.3),
    ("bounded", "bounded", 0.5),
    ("bounded", "bounded", 0.6),
    ("bounded", "bounded", 0.7),
    ("bounded_sqrt", "bounded_sqrt", 0.3),
    ("bounded_sqrt", "bounded_sqrt", 0.5),
    *[
        (f"adaptive:{lo}:{hi}:{p}", f"adaptive:{lo}:{hi}:{p}", 0.0)
        for lo in (0.1, 0.2, 0.3)
        for hi in (0.7, 0.8, 0.9)
        for p in (1, 2)
    ],
    *[
        (f"adz:{lo}:{hi}:{p}", f"adz:{lo}:{hi}:{p}", 0.0)
        for lo in (0.1, 0.2, 0.3)
        for hi in (0.6, 0.8)
        for p in (1, 2)
    ],
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", nargs="*", default=None)
    ap.add_argument("--analyzer", nargs="*", default=["plain", "english"])
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--chunk-size", type=int, default=800)
    ap.add_argument("--overlap", type=int, default=100)
    ap.add_argument("--mode", default="sentence")
    ap.add_argument("--methods", nargs="*", default=None)
    args = ap.parse_args()
    rag = RagSettings(chunk_size=args.chunk_size, chunk_overlap=args.overlap, chunk_mode=args.mode)
    embed = embedder()
    wanted = args.methods
    methods = [m for m in METHODS if wanted is None or f"{m[1]}@{m[2]}" in wanted or m[1] in wanted]
    adaptive = ("adaptive:", "adz:", "adlen:", "adgap:")
    methods += [(m, m, 0.0) for m in wanted or () if m.startswith(adaptive) and (m, m, 0.0) not in methods]
    for corpus in load_corpora(args.corpora):
        built = build(corpus, rag, embed)
        styles = list(dict.fromkeys(q.style for q in corpus.queries))
        qvecs = embed([q.text for q in corpus.queries])
        print(
            f"\n## {corpus.name} ({len(corpus.docs)} docs, {len(built.chunk_text)} chunks)"
            f"{' HELD OUT' if corpus.held_out else ''}",
            flush=True,
        )
        print(f"{'method':<24}" + "".join(f"{s[:12]:>13}" for s in styles) + f"{'mean':>9}")
        for analyzer in args.analyzer:
            cands = [
                candidates(built, qvecs[i], q.text, args.depth, analyzer)
                for i, q in enumerate(corpus.queries)
            ]
            for label, method, w in methods:
                if method == "vector" and analyzer != args.analyzer[0]:
                    continue
                per: dict[str, list[float]] = {s: [] for s in styles}
                for q, c in zip(corpus.queries, cands, strict=True):
                    per[q.style].append(metrics(doc_ranking(built, fuse(c, method, w)), q.relevant)[0])
                means = [sum(v) / len(v) for v in per.values()]
                name = f"{label}@{w}" + ("" if method == "vector" else f"/{analyzer[:2]}")
                print(
                    f"{name:<24}" + "".join(f"{m:13.3f}" for m in means) + f"{sum(means) / len(means):9.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
