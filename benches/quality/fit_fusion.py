"""Fourth round of the held-out keyword cell: a learned, calibrated fusion instead of a hand rule.

For every (query, candidate chunk) among both rankings' candidates (depth 250 per side, as
``hybrid_search`` ranks with ``group_by_document``), features the index knows without the answer: the
cosine, BM25 / bound, their ranks among the candidates, the chunk's share of the query's IDF mass,
today's adaptive share, query term count, stop-word presence, the collection's chunks per document and
the number of documents that hold the whole query, and their products with the two scores. A linear
model scores each candidate; a document scores its best chunk. It is fitted as a pairwise logistic
ranker (the relevant document's best chunk against the best chunks of the top non-relevant documents;
every corpus x style cell weighs the same) with a fixed L2 penalty toward today's rule, in numpy only,
on the tuning corpora (reference, code, records) and their long-document stand-in (``tune.py
--long-docs``) at 800/100 (``--chunkings`` adds others). ``--cv`` gives leave-one-corpus-out results
(a corpus and its long-document variant leave together). Results, and why neither candidate became the
default: ``benches/README.md``, "The held-out keyword cell, fourth round".

The prose corpus (held out through the sixth round, a tuning corpus since) is loaded only by
``--held-out``, for candidates named before the check, and only per-style means are printed.

``--long-corpora`` adds the fifth round's long tuning corpora (``readmes``, ``npdocs``) to the training
data and the bar (README, "fifth round": refitted, the candidates lose on every set).

Usage: ``python -m benches.quality.fit_fusion [--chunkings 800/100 600/100] [--cv]`` prints the fitted
coefficients and the tuning bar; ``--held-out NAME ...`` checks fitted candidates on prose.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benches.quality import tune
from benches.quality.corpora import LONG_CORPUS_NAMES
from benches.quality.offline import metrics
from benches.quality.tune import STYLES, Q

F64 = npt.NDArray[np.float64]
CACHE = Path("/tmp/mcpg-fit-fusion")
GROUP = {
    "reference": "reference",
    "reference_by_module": "reference",
    "code": "code",
    "code_by_module": "code",
    "records": "records",
    "readmes": "readmes",
    "npdocs": "npdocs",
}

# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _ranks(values: F64, ids: npt.NDArray[np.int64]) -> F64:
    order = np.lexsort((ids, -values))
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def _full_docs(q: Q) -> int:
    return len({d for d, c in zip(q.docs, q.cover, strict=True) if c >= 1 - 1e-9})


FEATURES: dict[str, str] = {
    "cos": "cosine",
    "nb": "BM25 / bound",
    "w0nb": "today's share x BM25 / bound",
    "w0cos": "today's share x cosine",
    "cover": "the chunk's share of the query's IDF mass",
    "kwnb": "keyword-style query (no stop word, <= 4 terms) x BM25 / bound",
    "kwcos": "keyword-style x cosine",
    "cpdnb": "ln(chunks per document) x BM25 / bound",
    "cpdcos": "ln(chunks per document) x cosine",
    "kwcpdnb": "keyword-style x ln(chunks per document) x BM25 / bound",
    "fullnb": "ln(1 + documents holding every term) x BM25 / bound",
    "vrank": "-ln(1 + rank by cosine)",
    "krank": "-ln(1 + rank by BM25)",
    "shortnb": "min(1, terms / 3) x BM25 / bound",
}


def features(q: Q) -> F64:
    """Candidates x len(FEATURES), in FEATURES order."""
    cos = q.cos
    nb = q.bm / q.bound if q.bound > 0 else np.zeros_like(q.bm)
    w0 = tune.base_weight(q)
    kw = float(q.stop_words == 0 and 0 < q.n_terms <= 4)
    lcpd = math.log(max(q.avg_doc_chunks, 1.0))
    full = math.log1p(_full_docs(q))
    short = min(1.0, q.n_terms / 3)
    cols = {
        "cos": cos,
        "nb": nb,
        "w0nb": w0 * nb,
        "w0cos": w0 * cos,
        "cover": q.cover,
        "kwnb": kw * nb,
        "kwcos": kw * cos,
        "cpdnb": lcpd * nb,
        "cpdcos": lcpd * cos,
        "kwcpdnb": kw * lcpd * nb,
        "fullnb": full * nb,
        "vrank": -np.log1p(_ranks(cos, q.ids)),
        "krank": -np.log1p(_ranks(q.bm, q.ids)),
        "shortnb": short * nb,
    }
    return np.stack([cols[f] for f in FEATURES], axis=1)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Item:
    corpus: str  # with its chunking, e.g. "code_by_module@800/100"
    group: str  # the corpus it derives from (leaves together in cross-validation)
    q: Q
    x: F64


def load(chunking: str, long_docs: bool | str) -> dict[str, list[Q]]:
    """The tuning corpora's per-query candidates (cached on disk, keyed by the code that builds them:
    embedding is the slow part)."""
    size, overlap = (int(v) for v in chunking.split("/"))
    sources = [Path(tune.__file__), Path(tune.__file__).with_name("corpora.py")]
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    kind = "corpora" if long_docs == "corpora" else "long" if long_docs else "tune"
    path = CACHE / f"{kind}-{size}-{overlap}-{version}.pkl"
    if path.exists():
        with path.open("rb") as f:
            cached: dict[str, list[Q]] = pickle.load(f)
            return cached
    names = LONG_CORPUS_NAMES if kind == "corpora" else tune.LONG_DOCS if long_docs else tune.TUNING
    data = {c: qs for c, (_, qs) in tune.load(names, size, overlap, long_docs=kind == "long").items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f)
    return data


LONG_CORPORA = False  # --long-corpora: train and judge on the fifth round's long tuning corpora too


def items(chunkings: Sequence[str]) -> list[Item]:
    out = []
    kinds: tuple[bool | str, ...] = (False, True, "corpora") if LONG_CORPORA else (False, True)
    for ch in chunkings:
        for long_docs in kinds:
            for corpus, qs in load(ch, long_docs).items():
                out += [Item(f"{corpus}@{ch}", GROUP[corpus], q, features(q)) for q in qs]
    return out


# --------------------------------------------------------------------------------------------
# Ranking, scoring
# --------------------------------------------------------------------------------------------


def doc_order(q: Q, score: F64) -> list[str]:
    seen: dict[str, None] = {}
    for i in np.lexsort((q.ids, -score)):
        seen.setdefault(q.docs[int(i)], None)
        if len(seen) == 10:
            break
    return list(seen)


def rr(q: Q, score: F64) -> float:
    return metrics(doc_order(q, score), q.relevant)[0]


Scorer = Callable[[Item], F64]


def default_score(it: Item) -> F64:
    return tune.linear(it.q, tune.base_weight(it.q))


def linear_scorer(theta: F64, mask: F64) -> Scorer:
    return lambda it: it.x @ (theta * mask)


BASELINES: dict[str, Scorer] = {
    "vector": lambda it: it.q.cos,
    "bm25": lambda it: it.q.bm,
    "default": default_score,
}


def cell_means(its: Sequence[Item], scorer: Scorer) -> dict[tuple[str, str], float]:
    per: dict[tuple[str, str], list[float]] = {}
    for it in its:
        per.setdefault((it.corpus, it.q.style), []).append(rr(it.q, scorer(it)))
    return {k: sum(v) / len(v) for k, v in per.items()}


# --------------------------------------------------------------------------------------------
# Fitting: pairwise logistic, L2, Newton steps
# --------------------------------------------------------------------------------------------


def _best_chunk_per_doc(q: Q, score: F64) -> dict[str, int]:
    best: dict[str, int] = {}
    for i in np.lexsort((q.ids, -score)):
        best.setdefault(q.docs[int(i)], int(i))
    return best


def pairs(its: Sequence[Item], scorers: Sequence[Scorer], negatives: int) -> tuple[F64, F64]:
    """Differences (relevant best chunk - non-relevant best chunk) and their weights (each cell sums
    to one, each query's pairs share its part)."""
    cell_size: dict[tuple[str, str], int] = {}
    for it in its:
        cell_size[(it.corpus, it.q.style)] = cell_size.get((it.corpus, it.q.style), 0) + 1
    diffs, weights = [], []
    for it in its:
        rel_rows: list[int] = []
        neg_rows: dict[str, int] = {}
        for scorer in scorers:
            best = _best_chunk_per_doc(it.q, scorer(it))
            rel = [i for d, i in best.items() if d in it.q.relevant]
            if rel:
                rel_rows.append(rel[0])
            taken = 0
            for d, i in best.items():
                if d in it.q.relevant:
                    continue
                neg_rows.setdefault(d, i)
                taken += 1
                if taken == negatives:
                    break
        if not rel_rows or not neg_rows:
            continue
        pos = np.unique(rel_rows)
        neg = np.asarray(list(neg_rows.values()))
        d = (it.x[pos][:, None, :] - it.x[neg][None, :, :]).reshape(-1, it.x.shape[1])
        pair_w = np.ones(len(d))
        if LAMBDA_WEIGHTS:  # LambdaRank: a pair weighs the reciprocal-rank change of swapping it
            order = list(_best_chunk_per_doc(it.q, scorers[-1](it)))
            rank = {doc: r + 1 for r, doc in enumerate(order)}
            rel_rank = min(rank[it.q.docs[int(i)]] for i in pos)
            neg_rank = np.asarray([rank[it.q.docs[int(i)]] for i in neg], dtype=np.float64)
            delta = np.abs(1.0 / rel_rank - 1.0 / neg_rank)
            pair_w = np.tile(delta, len(pos))
            if pair_w.sum() <= 0:
                continue
        diffs.append(d)
        weights.append(pair_w / (pair_w.sum() * cell_size[(it.corpus, it.q.style)]))
    return np.concatenate(diffs), np.concatenate(weights)


DEFAULT_THETA = {"cos": 1.0, "w0nb": 1.0, "w0cos": -1.0}  # today's rule: cos + w0 (nb - cos)


def prior() -> F64:
    return np.asarray([DEFAULT_THETA.get(f, 0.0) for f in FEATURES])


def newton(d: F64, w: F64, lam: float, mask: F64, steps: int = 60) -> F64:
    """Pairwise logistic loss + lam/2 |theta - prior|^2 (the prior is today's rule, so a large lam
    gives it back)."""
    k = d.shape[1]
    theta0 = prior() * mask
    theta = theta0.copy()
    dm = d * mask
    wn = w / w.sum()
    for _ in range(steps):
        m = dm @ theta
        p = 1.0 / (1.0 + np.exp(np.clip(m, -50, 50)))  # sigmoid(-m)
        grad = -(dm * (wn * p)[:, None]).sum(0) + lam * (theta - theta0)
        h = (dm * (wn * p * (1 - p))[:, None]).T @ dm + lam * np.eye(k)
        step = np.linalg.solve(h, grad)
        step *= min(1.0, 1.0 / max(float(np.abs(step).max()), 1e-12))  # damped: at most 1 per step
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return theta * mask


TEMPERATURE = 20.0  # score differences are scaled by this in the loss (cosines differ by ~0.05)
NEGATIVES = 10
LAMBDA_WEIGHTS = False


def fit(its: Sequence[Item], lam: float, mask: F64, rounds: int = 3) -> F64:
    """Pairs from vector, BM25 and today's default rankings, then from the model itself, refitted."""
    scorers: list[Scorer] = list(BASELINES.values())
    theta = prior() * mask
    for _ in range(rounds):
        d, w = pairs(its, scorers, NEGATIVES)
        theta = newton(d * TEMPERATURE, w, lam, mask)
        scorers = [*BASELINES.values(), linear_scorer(theta, mask)]
    return theta


# --------------------------------------------------------------------------------------------
# The bar
# --------------------------------------------------------------------------------------------


@dataclass
class Bar:
    mean: float  # ordinary tuning cells at 800/100
    worst: float  # their worst margin against the better single retriever
    vs_default: float
    long_kw: tuple[float, float]  # long-docs reference, code keyword margins
    long_vs_default: float
    long_mean: float
    # fifth round: the long tuning corpora (readmes, npdocs), when loaded: keyword margins, worst cell
    # margin, worst change against the default, mean
    new_kw: tuple[float, ...] = ()
    new_worst: float = 0.0
    new_vs_default: float = 0.0
    new_mean: float = 0.0

    def passes(self, default_mean: float) -> bool:
        return (
            self.worst >= -0.01
            and self.mean >= default_mean
            and min(self.long_kw) >= -0.01
            and self.long_vs_default >= -0.01
            and self.new_worst >= -0.01
        )

    def __str__(self) -> str:
        out = (
            f"tuning {self.mean:.4f} / {self.worst:+.3f} / {self.vs_default:+.3f}   long-docs kw "
            f"{self.long_kw[0]:+.3f} / {self.long_kw[1]:+.3f} / {self.long_vs_default:+.3f} / "
            f"{self.long_mean:.4f}"
        )
        if self.new_kw:
            out += (
                f"   long corpora kw {' / '.join(f'{v:+.3f}' for v in self.new_kw)} worst "
                f"{self.new_worst:+.3f} / {self.new_vs_default:+.3f} / {self.new_mean:.4f}"
            )
        return out


def bar(its: Sequence[Item], scorer: Scorer, chunking: str) -> Bar:
    sel = [it for it in its if it.corpus.endswith("@" + chunking)]
    got = cell_means(sel, scorer)
    vec, bm, df = (cell_means(sel, BASELINES[n]) for n in ("vector", "bm25", "default"))
    new = [c for c in got if c[0].split("@")[0] in LONG_CORPUS_NAMES]
    ordinary = [c for c in got if "_by_module" not in c[0] and c not in new]
    long = [c for c in got if "_by_module" in c[0]]
    margin = {c: got[c] - max(vec[c], bm[c]) for c in got}
    return Bar(
        mean=float(np.mean([got[c] for c in ordinary])),
        worst=min(margin[c] for c in ordinary),
        vs_default=min(got[c] - df[c] for c in ordinary),
        long_kw=(
            margin[(f"reference_by_module@{chunking}", "keyword")],
            margin[(f"code_by_module@{chunking}", "keyword")],
        ),
        long_vs_default=min(got[c] - df[c] for c in long),
        long_mean=float(np.mean([got[c] for c in long])),
        new_kw=tuple(margin[c] for c in new if c[1] == "keyword"),
        new_worst=min((margin[c] for c in new), default=0.0),
        new_vs_default=min((got[c] - df[c] for c in new), default=0.0),
        new_mean=float(np.mean([got[c] for c in new])) if new else 0.0,
    )


FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "scores": ("cos", "nb", "w0nb", "w0cos"),
    "scores+cover": ("cos", "nb", "w0nb", "w0cos", "cover"),
    "scores+kw": ("cos", "nb", "w0nb", "w0cos", "kwnb", "kwcos", "shortnb"),
    "scores+kw+cpd": ("cos", "nb", "w0nb", "w0cos", "kwnb", "kwcos", "shortnb", "cpdnb", "cpdcos", "kwcpdnb"),
    "scores+ranks": ("cos", "nb", "w0nb", "w0cos", "vrank", "krank"),
    "all": tuple(FEATURES),
}


def mask_of(names: Sequence[str]) -> F64:
    return np.asarray([1.0 if f in names else 0.0 for f in FEATURES])


def loco(its: Sequence[Item], lam: float, mask: F64) -> dict[str, float]:
    """Leave one corpus group out: the worst margin of the left-out group's cells (all chunkings)."""
    out = {}
    for g in sorted({it.group for it in its}):
        theta = fit([it for it in its if it.group != g], lam, mask)
        test = [it for it in its if it.group == g]
        got = cell_means(test, linear_scorer(theta, mask))
        vec, bm = cell_means(test, BASELINES["vector"]), cell_means(test, BASELINES["bm25"])
        out[g] = min(got[c] - max(vec[c], bm[c]) for c in got)
    return out


@dataclass(frozen=True)
class Candidate:
    features: str  # a key of FEATURE_SETS
    lam: float
    negatives: int = 10
    lambda_weights: bool = False


# Fixed before the held-out check (fourth round; none passed the tuning bar, see benches/README.md):
# "fit-all" has the best tuning mean with an ordinary worst margin of +0.000 (long-docs code keyword
# -0.043); "fit-all-lambda" is the LambdaRank-weighted fit with the smallest long-docs loss against
# today's default (-0.007) at an ordinary worst margin of -0.004.
CANDIDATES: dict[str, Candidate] = {
    "fit-all": Candidate("all", 0.1),
    "fit-all-lambda": Candidate("all", 0.3, lambda_weights=True),
}


def fit_candidate(its: Sequence[Item], c: Candidate) -> F64:
    global NEGATIVES, LAMBDA_WEIGHTS
    saved = NEGATIVES, LAMBDA_WEIGHTS
    NEGATIVES, LAMBDA_WEIGHTS = c.negatives, c.lambda_weights
    try:
        return fit(its, c.lam, mask_of(FEATURE_SETS[c.features]))
    finally:
        NEGATIVES, LAMBDA_WEIGHTS = saved


def held_out(its: Sequence[Item], names: Sequence[str]) -> None:
    """Fit the named candidates on the tuning items, then print prose's per-style means (800/100)."""
    data = tune.load(tune.HELD_OUT, 800, 100)
    (qs,) = [qs for _, qs in data.values()]
    prose = [Item("prose@800/100", "prose", q, features(q)) for q in qs]
    scorers = dict(BASELINES)
    for name in names:
        c = CANDIDATES[name]
        theta = fit_candidate(its, c)
        print(name, " ".join(f"{f}={t:+.4f}" for f, t in zip(FEATURES, theta, strict=True) if t))
        scorers[name] = linear_scorer(theta, mask_of(FEATURE_SETS[c.features]))
    print(f"{'prose (held out)':<24}" + "".join(f"{s:>14}" for s in STYLES) + f"{'mean':>8}")
    for name, scorer in scorers.items():
        got = cell_means(prose, scorer)
        values = [got[("prose@800/100", s)] for s in STYLES]
        print(f"{name:<24}" + "".join(f"{v:14.3f}" for v in values) + f"{sum(values) / 4:8.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunkings", nargs="*", default=["800/100"])
    ap.add_argument("--sets", nargs="*", default=list(FEATURE_SETS))
    ap.add_argument("--lams", nargs="*", type=float, default=[1e-4, 1e-3, 1e-2, 1e-1])
    ap.add_argument("--cv", action="store_true", help="leave-one-corpus-out results too")
    ap.add_argument("--negatives", type=int, default=NEGATIVES)
    ap.add_argument("--temperature", type=float, default=TEMPERATURE)
    ap.add_argument("--candidates", action="store_true", help="the fixed candidates (with --cv: LOCO)")
    ap.add_argument("--lambda-weights", action="store_true", help="LambdaRank pair weights")
    ap.add_argument("--held-out", nargs="*", default=None, help="candidates to check on prose")
    ap.add_argument(
        "--long-corpora", action="store_true", help="fit on the long tuning corpora too (fifth round)"
    )
    args = ap.parse_args()
    globals().update(
        NEGATIVES=args.negatives,
        TEMPERATURE=args.temperature,
        LAMBDA_WEIGHTS=args.lambda_weights,
        LONG_CORPORA=args.long_corpora,
    )
    its = items(args.chunkings)
    if args.held_out:
        held_out(its, args.held_out)
        return
    if args.candidates:
        df = bar(its, default_score, "800/100")
        print(f"{'default':<28}{df}")
        for name, c in CANDIDATES.items():
            theta = fit_candidate(its, c)
            print(f"{name:<28}{bar(its, linear_scorer(theta, mask_of(FEATURE_SETS[c.features])), '800/100')}")
            print("    " + " ".join(f"{f}={t:+.4f}" for f, t in zip(FEATURES, theta, strict=True) if t))
            if args.cv:
                globals().update(NEGATIVES=c.negatives, LAMBDA_WEIGHTS=c.lambda_weights)
                cv = loco(its, c.lam, mask_of(FEATURE_SETS[c.features]))
                print(
                    "    loco worst margin of the left-out corpus: "
                    + " ".join(f"{g} {v:+.3f}" for g, v in cv.items()),
                    flush=True,
                )
        return
    df = bar(its, default_score, "800/100")
    print(f"{'default':<28}{df}")
    for name in args.sets:
        mask = mask_of(FEATURE_SETS[name])
        for lam in args.lams:
            theta = fit(its, lam, mask)
            b = bar(its, linear_scorer(theta, mask), "800/100")
            line = f"{name + ' ' + str(lam):<28}{b} {'PASS' if b.passes(df.mean) else ''}"
            if args.cv:
                cv = loco(its, lam, mask)
                line += "  loco " + " ".join(f"{g[:3]} {v:+.3f}" for g, v in cv.items())
            print(line, flush=True)
            print("    " + " ".join(f"{f}={t:+.3f}" for f, t in zip(FEATURES, theta, strict=True) if t))


if __name__ == "__main__":
    main()
