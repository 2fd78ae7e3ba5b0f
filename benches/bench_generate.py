"""Gemma 3 270M generation: ours (int8 default; fp32 / bf16 via transformers) vs llama.cpp, same GGUF.

Each configuration runs in its own subprocess (clean peak RSS, no shared torch state) on
``--threads`` threads (default 2). Reported per configuration: load time (from the model
cache; the int8 cache is built beforehand and its first build timed separately), prompt
processing tok/s, decode tok/s (medians of ``runs``), resident and peak RSS; and the ratio
of our decode speed to llama.cpp's in the same run. ``--quick`` uses fewer tokens and runs and skips the
uncached (GGUF conversion) load; ``--prompt-words`` sets the prompt's length (96 words, ~108 tokens).
The Rust kernels' levels (``simd``, and ``q8_kernel`` for the int8 products of a prompt's rows) are
printed first and kept in the results.

    .venv/bin/python benches/bench_generate.py [--quick] [--threads 2] [--prompt-words 96] [--json out.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

PROMPT_WORDS = (
    "The history of the city begins with a small settlement on the river, where traders met to exchange "
    "grain, salt and cloth. Over the centuries the town grew into a regional capital with a cathedral, "
    "a university and a busy port. "
)


def _prompt(n_words: int) -> str:
    words = (PROMPT_WORDS * (n_words // 20 + 1)).split()  # the paragraph has > 20 words
    return " ".join(words[:n_words])


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rss_mib() -> float:
    return _status_mib("VmRSS") or float("nan")


def _peak_rss_mib() -> float:
    # VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak into the worker.
    peak = _status_mib("VmHWM")
    return peak if peak is not None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


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


def worker(config: str, models: str, gguf: str, threads: int, prompt_words: int = 96) -> None:
    """Serve timing requests for one loaded engine over stdin/stdout (one JSON line each)."""
    if config not in ("llama_cpp", "ours_q8"):
        import torch

        torch.set_num_threads(threads)
    if config == "llama_cpp":
        engine: Any = _Llama(gguf, threads)
    else:
        dtype = {"fp32": "float32", "bf16": "bfloat16", "q8": "q8_0"}[config.rsplit("_", 1)[1]]
        engine = _Ours(models, dtype, threads, fast=config.startswith("ours_"))
    # memory right after the load: the peak of loading against what stays resident (target <= 1.1x)
    loaded = {
        "load_s": round(engine.load_s, 3),
        "load_peak_rss_mib": _peak_rss_mib(),
        "load_rss_mib": _rss_mib(),
    }
    print(json.dumps(loaded), flush=True)
    prompt = _prompt(prompt_words)
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "prefill":
            print(json.dumps(engine.prefill(prompt)), flush=True)
        elif command == "decode":
            print(json.dumps(engine.decode(int(arg[0]))), flush=True)
        elif command == "rss":
            print(json.dumps(_peak_rss_mib()), flush=True)
        elif command == "rss_now":
            print(json.dumps(_rss_mib()), flush=True)
        else:
            return


class _Worker:
    """One engine in its own process, driven line by line."""

    def __init__(self, config: str, **kwargs: Any) -> None:
        repo = Path(__file__).resolve().parent.parent
        env = {
            **os.environ,
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", config, "--worker-args", json.dumps(kwargs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env,
        )
        loaded = self._read()
        self.load_s = float(loaded["load_s"])
        self.load_rss = (float(loaded["load_peak_rss_mib"]), float(loaded["load_rss_mib"]))

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(
    quick: bool,
    threads: int = 2,
    models_dir: Path | None = None,
    only: list[str] | None = None,
    prompt_words: int = 96,
) -> dict[str, Any]:
    """Run every configuration; return the figures and the ratios against llama.cpp."""
    from mcp_gemma import native
    from mcp_gemma.llm.models import ModelStore

    kernels = {"simd": native.simd_level(), "q8_kernel": native.q8_kernel_level()}
    print(f"Rust kernels: {kernels['simd']}; int8 prompt products: {kernels['q8_kernel']}", flush=True)

    decode_tokens, runs = (24, 3) if quick else (64, 5)
    with tempfile.TemporaryDirectory(prefix="bench-gemma-") as scratch:
        models = models_dir or Path(scratch) / "models"
        store = ModelStore(models)
        gguf = store.assemble_packaged()
        results: dict[str, Any] = {
            **kernels,
            "threads": threads,
            "decode_tokens": decode_tokens,
            "runs": runs,
            "prompt_words": prompt_words,
        }
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
        configs = ["ours_q8", "ours_bf16"] + ([] if quick else ["ours_fp32", "transformers_fp32"])
        if only:
            configs = [c for c in configs if c in only]
        # The int8 cache is built on a model's first load; time that once, apart from the runs.
        first = _Worker("ours_q8", models=str(models), gguf=str(gguf), threads=threads)
        results["q8_first_load_s"] = first.load_s
        first.close()
        try:
            import llama_cpp  # noqa: F401

            if not only or "llama_cpp" in only:
                configs.append("llama_cpp")
        except ImportError:
            results["llama_cpp"] = {
                "error": "llama-cpp-python is not installed (pip install llama-cpp-python)"
            }
        # One process per engine (no two thread pools in a process), loaded once, their runs
        # interleaved so that load from other processes on the machine hits each alike.
        workers = {
            n: _Worker(n, models=str(models), gguf=str(gguf), threads=threads, prompt_words=prompt_words)
            for n in configs
        }
        samples: dict[str, dict[str, list[float]]] = {n: {"prefill": [], "decode": []} for n in configs}
        try:
            for _ in range(runs):
                for name, w in workers.items():
                    _common.settle()  # the previous engine's threads (ggml's poll, rayon) park first
                    samples[name]["prefill"].append(float(w.ask("prefill")))
                    samples[name]["decode"].append(float(w.ask(f"decode {decode_tokens}")))
            for name, w in workers.items():
                results[name] = {
                    "load_s": w.load_s,
                    "load_peak_vs_resident": round(w.load_rss[0] / w.load_rss[1], 3),
                    "prompt_tok_s": _median(samples[name]["prefill"]),
                    "decode_tok_s": _median(samples[name]["decode"]),
                    "decode_runs": [round(v, 2) for v in samples[name]["decode"]],
                    "rss_mib": w.ask("rss_now"),
                    "peak_rss_mib": w.ask("rss"),
                }
        finally:
            for w in workers.values():
                w.close()
    for figure, ratio in (("decode_tok_s", "decode_vs_llama_cpp"), ("prompt_tok_s", "prompt_vs_llama_cpp")):
        peer = results.get("llama_cpp", {}).get(figure)
        for key in ("ours_q8", "ours_bf16", "ours_fp32", "transformers_fp32"):
            ours = results.get(key, {}).get(figure)
            if peer and ours:
                results[key][ratio] = round(ours / peer, 3)
    results["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=96, help="words in the timed prompt")
    parser.add_argument("--models-dir", type=Path, default=None, help="reuse a converted model cache")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="configurations to run (ours_q8 ours_bf16 ours_fp32 transformers_fp32 llama_cpp)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, **json.loads(args.worker_args))
        return
    if args.prompt_words < 1:
        parser.error("--prompt-words must be at least 1")
    results = run(args.quick, args.threads, args.models_dir, args.only, args.prompt_words)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
