"""Where and in which weights format Gemma runs: the device ('cpu' / 'cuda') and the dtype."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp_gemma.compute import TORCH_EXTRA, gpu_driver_present, import_torch, torch_installed
from mcp_gemma.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch


logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when a CUDA device is usable, else 'cpu'.

    Without a GPU driver on the machine the answer is 'cpu' without importing torch (seconds and
    ~500 MB resident that the int8 path never needs); so it is without torch installed ('auto'), while
    'cuda' then names the extra to install.
    """
    if device == "cpu" or (device == "auto" and not gpu_driver_present()):
        return "cpu"
    if device == "auto" and not torch_installed():
        logger.info(
            "a GPU driver is present but torch is not installed (%s): Gemma runs on the CPU", TORCH_EXTRA
        )
        return "cpu"
    torch = import_torch(f"gemma.device={device!r}")
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
    """The torch dtype of a float weights format (imports torch, or names the extra to install)."""
    lib = import_torch(f"gemma.dtype={name!r} (weights through transformers)")
    dtypes: dict[str, torch.dtype] = {
        "float32": lib.float32,
        "bfloat16": lib.bfloat16,
        "float16": lib.float16,
    }
    return dtypes[name]
