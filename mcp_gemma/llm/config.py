"""Settings of the local Gemma model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class GemmaSettings(BaseModel):
    """Which Gemma to run, where, and with which limits."""

    model: str = Field(
        "gemma3-270m-gguf",
        description="'gemma3-270m-gguf' (the packaged GGUF), a local checkpoint directory, or a Hub id.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when present, else CPU.")
    dtype: Literal["auto", "q8_0", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights format. auto = q8_0 (block int8, Rust kernels) on a CPU for Gemma 3 "
        "text models, else bfloat16. Float dtypes load through transformers.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="CPU threads of the model's products: torch's threads for float dtypes, a pool of "
        "this size for the int8 kernels (None = torch's default / every usable core).",
    )
    max_new_tokens_limit: int = Field(
        2048, ge=1, le=32768, description="Largest max_new_tokens a call may ask."
    )
    default_max_new_tokens: int = Field(
        256, ge=1, le=32768, description="max_new_tokens when a call gives none."
    )
    max_prompt_chars: int = Field(100_000, ge=1, description="Longest question + context accepted.")
    timeout_s: float = Field(300.0, gt=0, description="Wall-clock budget of one generation.")
    concurrency: int = Field(
        1, ge=1, le=64, description="Generations running at once; others queue in order."
    )
    preload: bool = Field(False, description="Load the model at start instead of on first use.")
    cache_dir: Path | None = Field(None, description="Model cache (None = <data_dir>/models).")
    brain: Literal["local", "client", "auto"] = Field(
        "local",
        description="Who answers reason calls: the local model, the client's model (sampling), or auto.",
    )
    backend: Literal["transformers", "llama_cpp"] = Field("transformers", description="Inference backend.")
