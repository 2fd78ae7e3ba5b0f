"""The transformers + torch backend: load a Gemma checkpoint and generate with it, synchronously.

Decoding is one loop of our own (sampling, stop strings, streaming, cancellation between
token steps, a time budget) over one of two step functions: the lean Gemma 3 decoder in
``fast_gemma3`` where the architecture allows, otherwise the transformers forward with its
KV cache. Both run under ``torch.inference_mode``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.base import (
    ChatMessage,
    FinishReason,
    GenerationResult,
    ModelInfo,
    OnText,
    Prompt,
    PromptStyle,
)
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.decoding import TextStream, sample_token
from mcp_gemma.llm.models import ModelStore, ResolvedModel

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Progress = Any  # Callable[[str], None]; kept loose for the worker-thread callback


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when a CUDA device is usable, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "gemma.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' is bfloat16: half the bytes per decode step.

    Measured on a 2-core AVX2 CPU (benches/bench_generate.py, 2 threads): decode 12.4 tok/s in
    bf16 vs 7.3 in float32, while prompt processing is slower (62 vs 146 tok/s); for answers of
    more than a few tokens bf16 finishes first. Choose float32 for long prompts and short answers.
    """
    import torch

    if dtype == "auto":
        return torch.bfloat16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class GemmaModel:
    """A loaded Gemma checkpoint (transformers + torch)."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, *, fast: bool) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._info = info
        self._fast = fast
        self._decoder: Any = None
        self._max_positions = int(getattr(model.config, "max_position_embeddings", 8192))
        self._eos = self._end_ids()

    @classmethod
    def load(
        cls,
        settings: GemmaSettings,
        store: ModelStore,
        *,
        progress: Progress | None = None,
        hf_token: str | None = None,
    ) -> GemmaModel:
        """Resolve, (convert once,) and load the configured model; raise ``ModelUnavailableError``."""
        started = time.perf_counter()
        say = progress or (lambda _msg: None)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        resolved: ResolvedModel = store.resolve(settings.model)
        say(f"resolving {resolved.model_id}")
        from_cache = store.ensure_checkpoint(resolved, progress=say)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # progress goes through ``say``
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        say(f"loading weights from {resolved.checkpoint} ({device}, {str(dtype).removeprefix('torch.')})")
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
        style: PromptStyle = "chat" if getattr(tokenizer, "chat_template", None) else "completion"
        info = ModelInfo(
            model_id=resolved.model_id,
            source=str(resolved.checkpoint),
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            prompt_style=style,
            decoder="gemma3-fast" if fast else "transformers",
            threads=torch.get_num_threads(),
            load_seconds=round(time.perf_counter() - started, 3),
            from_cache=from_cache,
        )
        logger.info("loaded %s in %.1f s (%s)", resolved.model_id, info.load_seconds, info.model_dump())
        return cls(model, tokenizer, info, fast=fast)

    @property
    def info(self) -> ModelInfo:
        """What is loaded and how it runs."""
        return self._info

    def close(self) -> None:
        """Drop the weights so their memory can be returned."""
        self._model = None
        self._tokenizer = None
        self._decoder = None

    def _end_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self._model.config, getattr(self._model, "generation_config", None)):
            value = getattr(source, "eos_token_id", None)
            ids.update([value] if isinstance(value, int) else list(value or []))
        if self._tokenizer.eos_token_id is not None:
            ids.add(int(self._tokenizer.eos_token_id))
        if self._info.prompt_style == "chat":
            end_turn = self._tokenizer.convert_tokens_to_ids("<end_of_turn>")
            if isinstance(end_turn, int) and end_turn != self._tokenizer.unk_token_id:
                ids.add(end_turn)
        return ids

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt: chat template for chat models, plain text for base models."""
        tok = self._tokenizer
        if self._info.prompt_style == "chat":
            messages = [ChatMessage(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
            text = tok.apply_chat_template(
                [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=False
            )
            return list(tok(text, add_special_tokens=False)["input_ids"])
        if not isinstance(prompt, str):
            prompt = completion_prompt(prompt)
        return list(tok(prompt)["input_ids"])

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the rendered prompt occupies."""
        return len(self.render(prompt))

    def generate(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        on_text: OnText | None = None,
    ) -> GenerationResult:
        """Generate up to ``max_new_tokens``; stream text to ``on_text``; stop on cancel or timeout."""
        import torch

        if self._model is None:
            raise ModelUnavailableError("the model was unloaded; it loads again on the next call")
        started = time.perf_counter()
        deadline = started + timeout_s if timeout_s else None
        ids = self.render(prompt)
        if len(ids) + max_new_tokens > self._max_positions:
            raise InvalidInputError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                f"context of {self._max_positions} tokens; shorten the prompt or ask for fewer tokens"
            )
        generator = None
        if temperature > 0:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        stream = TextStream(lambda out: self._tokenizer.decode(out, skip_special_tokens=True), stop)
        finish: FinishReason = "length"
        produced = 0
        with torch.inference_mode():
            step = self._stepper(ids, capacity=len(ids) + max_new_tokens)
            logits = step(None)
            while produced < max_new_tokens:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    finish = "timeout"
                    break
                token = sample_token(logits.to("cpu"), temperature, top_p, generator)
                produced += 1
                if token in self._eos:
                    finish = "stop"
                    break
                piece = stream.push(token)
                if piece and on_text is not None:
                    on_text(piece)
                if stream.stopped:
                    finish = "stop"
                    break
                if produced < max_new_tokens:
                    logits = step(token)
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail)
        return GenerationResult(
            text=stream.text,
            tokens_in=len(ids),
            tokens_out=produced,
            finish_reason=finish,
            seconds=round(time.perf_counter() - started, 4),
            model_id=self._info.model_id,
        )

    def _stepper(self, ids: list[int], capacity: int) -> Any:
        """A function: ``None`` runs the prompt, a token id runs one decode step; both return logits."""
        import torch

        device = self._info.device
        prompt = torch.tensor(ids, dtype=torch.long, device=device)
        if self._fast:
            from mcp_gemma.llm.fast_gemma3 import Gemma3Decoder

            if self._decoder is None:  # fused weights are built once, each call gets its own KV cache
                self._decoder = Gemma3Decoder(self._model)
            decoder: Gemma3Decoder = self._decoder.session(capacity)

            def fast_step(token: int | None) -> torch.Tensor:
                if token is None:
                    return decoder.forward(prompt)
                return decoder.forward(torch.tensor([token], dtype=torch.long, device=device))

            return fast_step

        from transformers import DynamicCache

        cache = DynamicCache(config=self._model.config)
        model = self._model

        def hf_step(token: int | None) -> torch.Tensor:
            inputs = prompt[None, :] if token is None else torch.tensor([[token]], device=device)
            out = model(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
            logits: torch.Tensor = out.logits[0, -1].float()
            return logits

        return hf_step

    @property
    def fast(self) -> bool:
        """Whether the lean Gemma 3 decoder runs (else the transformers forward)."""
        return self._fast

    def use_fast_decoder(self, enabled: bool) -> None:
        """Switch decoding loops (benchmarks and parity tests compare them)."""
        from mcp_gemma.llm import fast_gemma3

        self._fast = enabled and fast_gemma3.supports(self._model.config)
        self._info = self._info.model_copy(
            update={"decoder": "gemma3-fast" if self._fast else "transformers"}
        )


def completion_prompt(messages: Sequence[ChatMessage]) -> str:
    """A plain-text transcript for base models, ending where the assistant speaks."""
    lines = []
    for message in messages:
        if message.role == "system":
            lines.append(f"{message.content}\n")
        else:
            lines.append(f"{message.role.capitalize()}: {message.content}")
    lines.append("Assistant:")
    return "\n".join(lines)


def checkpoint_path(settings: GemmaSettings, data_dir: Path) -> Path:
    """Where the configured model's checkpoint lives (resolving only; nothing is built)."""
    from mcp_gemma.llm.models import models_dir

    return ModelStore(models_dir(settings, data_dir)).resolve(settings.model).checkpoint
