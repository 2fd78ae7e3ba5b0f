"""Parity of the product path with the offline tuning harness: every query's reciprocal rank through a
real MCP session (``hybrid_search``, ``fusion="coverage"`` and the default, "adaptive") against
``tune.py``'s offline rules (``covfuse:0.5:99+frag:0.6:5:4`` and ``frag:0.6:5:4``, the eighth round's
default) on the same corpora and chunking.

Prints, per corpus x style, both MRR@10 values to 12 digits, their difference and the queries whose
reciprocal rank differs; exits 1 if any does. Usage: ``python -m benches.quality.parity [--corpora
NAME ...]`` (default: the nine benchmark corpora; the held-out ones included, as the rules are fixed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

from benches.quality.corpora import CORPUS_NAMES

# mcp session mode -> tune.py rule
PAIRS = {"coverage": "covfuse:0.5:99+frag:0.6:5:4", "default": "frag:0.6:5:4"}


async def _mcp(names: list[str]) -> dict[str, dict[str, dict[str, list[float]]]]:
    from mcp import Client

    from benches.quality.corpora import load_corpora
    from benches.quality.evaluate import evaluate, ingest
    from mcp_gemma.server.app import create_server
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.embedded import EmbeddedRedis

    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        try:
            for corpus in load_corpora(names):
                settings = load_settings(
                    data_dir=Path(tmp) / corpus.name, redis_url=redis.url, namespace=f"p{corpus.name}"
                )
                async with Client(create_server(settings)) as client:
                    await ingest(client, corpus)
                    scores = await evaluate(client, corpus, list(PAIRS))
                out[corpus.name] = {
                    mode: {style: [v[0] for v in values] for style, values in s.per_style.items()}
                    for mode, s in scores.items()
                }
        finally:
            redis.release()
    return out


def _offline(names: list[str]) -> dict[str, dict[str, dict[str, list[float]]]]:
    from benches.quality import tune
    from benches.quality.offline import metrics

    data = tune.load(names)
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for corpus, (built, qs) in data.items():
        out[corpus] = {}
        for mode, rule in PAIRS.items():
            per: dict[str, list[float]] = {}
            for q in qs:
                per.setdefault(q.style, []).append(metrics(tune.ranking(built, q, rule), q.relevant)[0])
            out[corpus][mode] = per
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", nargs="*", default=list(CORPUS_NAMES))
    args = ap.parse_args()
    online = anyio.run(_mcp, args.corpora)
    offline = _offline(args.corpora)
    bad = 0
    print(f"{'corpus':<10} {'style':<13} {'mode (rule)':<28} {'MCP MRR@10':>15} {'tune.py':>15} {'diff':>9}")
    for corpus in args.corpora:
        for mode, rule in PAIRS.items():
            for style, got in online[corpus][mode].items():
                want = offline[corpus][mode][style]
                a, b = sum(got) / len(got), sum(want) / len(want)
                differ = [i for i, (x, y) in enumerate(zip(got, want, strict=True)) if x != y]
                bad += len(differ)
                print(
                    f"{corpus:<10} {style:<13} {f'{mode} ({rule})':<28} {a:15.12f} {b:15.12f} {a - b:+9.2e}"
                    + (f"  queries differ: {differ}" if differ else "")
                )
    print("parity: every query's reciprocal rank matches" if not bad else f"parity: {bad} queries differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
