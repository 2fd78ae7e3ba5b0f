"""BM25 query latency: ours vs rank-bm25 (BM25Okapi) vs bm25s, over 100k synthetic chunks.

    python benches/bench_keyword.py [--quick]

Corpus: 100k chunks of 60-140 words drawn from a 30k-word vocabulary with Zipfian frequencies
(s = 1.1, like English), in sentences; queries are 2-5 mid-frequency words. Same tokenisation
for all (lower-cased words). bm25s runs with our k1/b; its Lucene BM25 drops the constant (k1 + 1)
factor, so its scores are ours / 2.2 and top-10 lists agree except where scores tie.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

# _common goes first: it removes OpenBLAS overrides before numpy loads OpenBLAS.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np

from mcp_gemma import _rust_core as rc

_WORD = re.compile(r"\w+")


def _corpus(n_docs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    vocab = sorted({"".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(60_000)})[:30_000]
    rng.shuffle(vocab)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(60, 141, n_docs)
    words = rng.choice(len(vocab), int(lengths.sum()), p=weights)
    docs = []
    pos = 0
    for length in lengths:
        chunk = [vocab[w] for w in words[pos : pos + length]]
        pos += length
        sentences = [" ".join(chunk[i : i + 12]).capitalize() + "." for i in range(0, len(chunk), 12)]
        docs.append(" ".join(sentences))
    queries = [" ".join(vocab[j] for j in rng.integers(50, 5_000, rng.integers(2, 6))) for _ in range(200)]
    return docs, queries


def _tok(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (ms per query; ratios > 1 mean we are faster)."""
    _common.require_release()
    n_docs = 5_000 if quick else 100_000
    k = 10
    docs, queries = _corpus(n_docs)
    out: dict[str, Any] = {"docs": n_docs, "k": k, **_common.machine()}

    t0 = time.perf_counter()
    ours = rc.BM25Index()
    ours.add_many(list(range(n_docs)), docs)
    out["ours_index_s"] = time.perf_counter() - t0
    out["ours_vocab"] = ours.vocab_size
    runs = 3 if quick else 5
    # ours and bm25s take turns (see _common.time_interleaved); rank-bm25 is too slow to take turns
    paths: dict[str, Any] = {"ours": lambda: [ours.search(q, k) for q in queries]}

    try:
        import bm25s
    except ImportError:
        out["bm25s"] = "not installed"
    else:
        t0 = time.perf_counter()
        tokens = bm25s.tokenize(docs, stopwords=None, show_progress=False)
        retriever = bm25s.BM25(k1=1.2, b=0.75)  # our defaults; bm25s defaults to k1=1.5
        retriever.index(tokens, show_progress=False)
        out["bm25s_index_s"] = time.perf_counter() - t0
        q_tokens = [bm25s.tokenize([q], stopwords=None, show_progress=False) for q in queries]

        def bm25s_each() -> None:
            for qt in q_tokens:
                retriever.retrieve(qt, k=k, show_progress=False)

        all_q = bm25s.tokenize(queries, stopwords=None, show_progress=False)
        paths["bm25s"] = bm25s_each
        paths["bm25s_batched"] = lambda: retriever.retrieve(all_q, k=k, show_progress=False)
    for name, ms in _common.time_interleaved(paths, runs).items():
        out[f"{name}_query_ms"] = ms / len(queries)
    if "bm25s_query_ms" in out:
        res, their_scores = retriever.retrieve(all_q, k=k, show_progress=False)
        agree = 0
        same_scores = 0
        for i, q in enumerate(queries):
            ids, scores = ours.search(q, k)
            agree += len(set(res[i].tolist()) & set(ids.tolist()))
            same_scores += bool(np.allclose(scores, 2.2 * their_scores[i], rtol=1e-4))
        out["top10_id_agreement_with_bm25s"] = agree / (k * len(queries))
        out["top10_score_lists_equal_bm25s"] = same_scores / len(queries)
        out["vs_bm25s"] = _common.ratio(out["bm25s_query_ms"], out["ours_query_ms"])
        out["vs_bm25s_batched"] = _common.ratio(out["bm25s_batched_query_ms"], out["ours_query_ms"])

    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        out["rank_bm25"] = "not installed"
    else:
        t0 = time.perf_counter()
        okapi = BM25Okapi([_tok(d) for d in docs])
        out["rank_bm25_index_s"] = time.perf_counter() - t0
        few = [_tok(q) for q in queries[:5]]

        def okapi_each() -> None:
            for qt in few:
                scores = okapi.get_scores(qt)
                np.argpartition(-scores, k)[:k]

        out["rank_bm25_query_ms"] = _common.time_median(okapi_each, 1 if not quick else 2) / len(few)
        out["vs_rank_bm25"] = _common.ratio(out["rank_bm25_query_ms"], out["ours_query_ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small corpus, few runs (CI smoke)")
    res = run(parser.parse_args().quick)
    print(json.dumps(res, indent=2, default=str))
    line = f"\nours {res['ours_query_ms']:.3f} ms/query"
    if "bm25s_query_ms" in res:
        line += (
            f", bm25s {res['bm25s_query_ms']:.3f} (x{res['vs_bm25s']:.1f}), "
            f"bm25s batched {res['bm25s_batched_query_ms']:.3f} (x{res['vs_bm25s_batched']:.1f})"
        )
    if "rank_bm25_query_ms" in res:
        line += f", rank-bm25 {res['rank_bm25_query_ms']:.1f} (x{res['vs_rank_bm25']:.0f})"
    print(line)


if __name__ == "__main__":
    main()
