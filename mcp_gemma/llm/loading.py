"""The two ways Gemma's weights load: block-int8 for the lean decoder (``q8.py``), or a float
checkpoint through transformers. Each returns the parts :class:`~mcp_gemma.llm.gemma.GemmaModel` is
built from (its keyword arguments).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import TYPE_CHECKING, Any

from mcp_gemma.errors import ModelUnavailableError
from mcp_gemma.llm.base import ModelInfo
from mcp_gemma.llm.models import ModelStore, ResolvedModel
from mcp_gemma.llm.tokenizer import CheckpointTokenizer, HFTokenizer

if TYPE_CHECKING:
    import torch

Progress = Any  # Callable[[str], None]; kept loose for the worker-thread callback


def load_q8(resolved: ResolvedModel, config: Any, store: ModelStore, say: Progress) -> dict[str, Any]:
    """Block-int8 weights from the cache next to the checkpoint (built once), the tokenizer on
    ``tokenizers``: no transformers import."""
    from mcp_gemma.llm.q8 import load_q8_weights

    checkpoint = resolved.checkpoint
    cache = store.q8_cache_path(resolved)
    # The tokenizer first, its parse buffers (~250 MB for Gemma's 33 MB tokenizer.json) handed back
    # before the weights arrive: the load's peak stays near what remains resident.
    tokenizer = CheckpointTokenizer(checkpoint)
    _release_free_heap()
    weights = load_q8_weights(checkpoint, config, cache=cache, say=say)
    _release_free_heap()  # the loaders' transient buffers would otherwise stay resident
    info = ModelInfo(
        model_id=resolved.model_id,
        source=str(checkpoint),
        device="cpu",
        dtype="q8_0",
        prompt_style="chat" if tokenizer.chat_template else "completion",
        decoder="gemma3-int8",
        threads=1,
        load_seconds=0.0,
        from_cache=False,
    )
    return {"config": config, "tokenizer": tokenizer, "info": info, "q8": weights}


def load_transformers(
    resolved: ResolvedModel, device: str, dtype: torch.dtype, hf_token: str | None
) -> dict[str, Any]:
    """A float checkpoint through transformers (any architecture, CPU or CUDA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # progress goes through ``say``
    model: Any
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(resolved.checkpoint),
            dtype=dtype,
            device_map=device if device != "cpu" else None,
            token=hf_token,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.checkpoint), token=hf_token)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailableError(
            f"could not load model {resolved.model_id!r} from {resolved.checkpoint}: {exc}"
        ) from exc
    model.eval()
    from mcp_gemma.llm import fast_gemma3

    fast = device == "cpu" and fast_gemma3.supports(model.config)
    wrapped = HFTokenizer(tokenizer)
    info = ModelInfo(
        model_id=resolved.model_id,
        source=str(resolved.checkpoint),
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        prompt_style="chat" if wrapped.chat_template else "completion",
        decoder="gemma3-fast" if fast else "transformers",
        threads=1,
        load_seconds=0.0,
        from_cache=False,
    )
    return {
        "config": model.config,
        "tokenizer": wrapped,
        "info": info,
        "model": model,
        "generation": getattr(model, "generation_config", None),
    }


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise; ~200 MB after a load)."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass
