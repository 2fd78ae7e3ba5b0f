"""Where and in which weights format Gemma runs: the device ('cpu' / 'cuda') and the dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_gemma.compute import gpu_driver_present
from mcp_gemma.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when a CUDA device is usable, else 'cpu'.

    Without a GPU driver on the machine the answer is 'cpu' without importing torch (seconds and
    ~500 MB resident that the int8 path never needs).
    """
    if device == "cpu" or (device == "auto" and not gpu_driver_present()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "gemma.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    return device


def resolve_dtype(dtype: str, device: str, config: Any = None) -> str:
    """The weights format to load: 'q8_0', 'float32', 'bfloat16' or 'float16'.

    'auto' is block int8 on a CPU when the lean Gemma 3 decoder supports the model, else bfloat16.
    Measured on a 2-core AVX2 CPU (benches/bench_generate.py, 2 threads): int8 decodes ~2x faster
    than bf16 and ~3x faster than float32 (every weight is read once per token; this CPU has no
    native bf16 arithmetic, so bf16 matmuls also pay for conversion).
    """
    from mcp_gemma.llm import fast_gemma3

    gemma3 = config is not None and fast_gemma3.supports(config)
    if dtype == "auto":
        return "q8_0" if device == "cpu" and gemma3 else "bfloat16"
    if dtype == "q8_0":
        if device != "cpu":
            raise ModelUnavailableError("gemma.dtype 'q8_0' runs on the CPU only; use 'auto' or 'bfloat16'")
        if not gemma3:
            raise ModelUnavailableError(
                "gemma.dtype 'q8_0' needs a Gemma 3 text checkpoint (config.json model_type gemma3_text); "
                "use 'auto' or a float dtype for this model"
            )
    return dtype


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a float weights format."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
