"""Gemma 3 270M generation: ours (transformers + lean decoder, fp32 / bf16) vs llama.cpp on the same GGUF.

Each configuration runs in its own subprocess (clean peak RSS, no shared torch state) on
``--threads`` threads (default 2). Reported per configuration: cold load time, prompt
processing tok/s, decode tok/s (medians of ``runs``), peak RSS; and the ratio of our decode
speed to llama.cpp's in the same run. ``--quick`` uses fewer tokens and runs and skips the
uncached (GGUF conversion) load.

    .venv/bin/python benches/bench_generate.py [--quick] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT_WORDS = (
    "The history of the city begins with a small settlement on the river, where traders met to exchange "
    "grain, salt and cloth. Over the centuries the town grew into a regional capital with a cathedral, "
    "a university and a busy port. "
)


def _prompt(n_words: int) -> str:
    words = (PROMPT_WORDS * 40).split()
    return " ".join(words[:n_words])


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Ours:
    """Our backend, timed the way a caller sees it (``generate`` with streaming)."""

    def __init__(self, models: str, dtype: str, threads: int, fast: bool) -> None:
        from mcp_gemma.llm.config import GemmaSettings
        from mcp_gemma.llm.gemma import GemmaModel
        from mcp_gemma.llm.models import ModelStore

        started = time.perf_counter()
        settings = GemmaSettings(dtype=dtype, threads=threads)  # type: ignore[arg-type]
        self.model = GemmaModel.load(settings, ModelStore(Path(models)))
        self.load_s = time.perf_counter() - started
        self.model.use_fast_decoder(fast)
        self.model.generate("Hello", max_new_tokens=2)  # warm-up

    def prefill(self, prompt: str) -> float:
        t = time.perf_counter()
        res = self.model.generate(prompt, max_new_tokens=1)
        return res.tokens_in / (time.perf_counter() - t)

    def decode(self, n: int) -> float:
        stamps: list[float] = []
        self.model.generate(
            "Once upon a time", max_new_tokens=n, on_text=lambda _p: stamps.append(time.perf_counter())
        )
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) >= 2 else float("nan")


class _Llama:
    """llama-cpp-python on the same GGUF file."""

    def __init__(self, gguf: str, threads: int) -> None:
        from llama_cpp import Llama

        started = time.perf_counter()
        self.llm = Llama(
            model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=1024, verbose=False
        )
        self.load_s = time.perf_counter() - started
        self.llm.create_completion("Hello", max_tokens=2, temperature=0.0)

    def prefill(self, prompt: str) -> float:
        tokens = self.llm.tokenize(prompt.encode())
        self.llm.reset()
        t = time.perf_counter()
        self.llm.eval(tokens)
        return len(tokens) / (time.perf_counter() - t)

    def decode(self, n: int) -> float:
        self.llm.reset()
        stamps = [
            time.perf_counter()
            for _chunk in self.llm.create_completion(
                "Once upon a time", max_tokens=n, temperature=0.0, stream=True
            )
        ]
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) >= 2 else float("nan")


def child_speed(
    models: str, gguf: str | None, threads: int, decode_tokens: int, runs: int, configs: list[str]
) -> dict[str, Any]:
    """Load every configuration in one process and interleave their runs, so load on a shared
    machine hits them alike; report medians."""
    import torch

    torch.set_num_threads(threads)
    engines: dict[str, Any] = {}
    for name in configs:
        if name == "llama_cpp" and gguf:
            engines[name] = _Llama(gguf, threads)
        elif name.startswith("ours_") or name.startswith("transformers_"):
            dtype = {"fp32": "float32", "bf16": "bfloat16"}[name.rsplit("_", 1)[1]]
            engines[name] = _Ours(models, dtype, threads, fast=name.startswith("ours_"))
    prompt = _prompt(96)
    samples: dict[str, dict[str, list[float]]] = {n: {"prefill": [], "decode": []} for n in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            samples[name]["prefill"].append(engine.prefill(prompt))
            samples[name]["decode"].append(engine.decode(decode_tokens))
    return {
        name: {
            "prompt_tok_s": _median(samples[name]["prefill"]),
            "decode_tok_s": _median(samples[name]["decode"]),
            "decode_runs": [round(v, 2) for v in samples[name]["decode"]],
        }
        for name in engines
    }


def child_footprint(models: str, gguf: str | None, threads: int, config: str) -> dict[str, Any]:
    """Load one configuration alone: load time and peak RSS after a short generation."""
    if config == "llama_cpp":
        assert gguf is not None
        engine: Any = _Llama(gguf, threads)
    else:
        dtype = {"fp32": "float32", "bf16": "bfloat16"}[config.rsplit("_", 1)[1]]
        engine = _Ours(models, dtype, threads, fast=True)
    engine.decode(8)
    return {"load_s": round(engine.load_s, 3), "peak_rss_mib": _peak_rss_mib()}


def _spawn(kind: str, **kwargs: Any) -> dict[str, Any]:
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--child-args", json.dumps(kwargs)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run(quick: bool, threads: int = 2, models_dir: Path | None = None) -> dict[str, Any]:
    """Run every configuration; return the figures and the ratios against llama.cpp."""
    from mcp_gemma.llm.models import ModelStore

    decode_tokens, runs = (24, 3) if quick else (64, 5)
    with tempfile.TemporaryDirectory(prefix="bench-gemma-") as scratch:
        models = models_dir or Path(scratch) / "models"
        store = ModelStore(models)
        gguf = store.assemble_packaged()
        results: dict[str, Any] = {"threads": threads, "decode_tokens": decode_tokens, "runs": runs}
        if not quick:
            fresh = Path(scratch) / "fresh-models"
            fresh.mkdir()
            (fresh / "gguf").mkdir()
            os.link(gguf, fresh / "gguf" / gguf.name)
            started = time.perf_counter()
            store_fresh = ModelStore(fresh)
            store_fresh.ensure_checkpoint(store_fresh.resolve("gemma3-270m-gguf"))
            results["gguf_conversion_s"] = round(time.perf_counter() - started, 2)
        else:
            store.ensure_checkpoint(store.resolve("gemma3-270m-gguf"))
        configs = ["ours_fp32", "ours_bf16"] + ([] if quick else ["transformers_fp32"])
        try:
            import llama_cpp  # noqa: F401

            configs.append("llama_cpp")
        except ImportError:
            results["llama_cpp"] = {
                "error": "llama-cpp-python is not installed (pip install llama-cpp-python)"
            }
        common = {"models": str(models), "gguf": str(gguf), "threads": threads}
        speed = _spawn("speed", decode_tokens=decode_tokens, runs=runs, configs=configs, **common)
        for name in configs:
            results[name] = dict(speed.get(name, {"error": speed.get("error")}))
            if name != "transformers_fp32":
                results[name].update(_spawn("footprint", config=name, **common))
    peer = results.get("llama_cpp", {}).get("decode_tok_s")
    for key in ("ours_bf16", "ours_fp32", "transformers_fp32"):
        ours = results.get(key, {}).get("decode_tok_s")
        if peer and ours:
            results[key]["decode_vs_llama_cpp"] = round(ours / peer, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=None, help="reuse a converted model cache")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=["speed", "footprint"], help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kwargs = json.loads(args.child_args)
        out = child_speed(**kwargs) if args.child == "speed" else child_footprint(**kwargs)
        print(json.dumps(out))
        return
    results = run(args.quick, args.threads, args.models_dir)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
