"""The transformers + torch backend: load a Gemma checkpoint and generate with it, synchronously.

Decoding is one loop of our own (sampling, stop strings, streaming, cancellation between
token steps, a time budget) over one of two step functions: the lean Gemma 3 decoder in
``fast_gemma3`` where the architecture allows, otherwise the transformers forward with its
KV cache. Both run under ``torch.inference_mode``.

Weights come one of two ways. On a CPU with a Gemma 3 text model the default (``dtype = auto``)
is block-int8 weights (``q8.py``) read from a cache next to the checkpoint, with the tokenizer on
the ``tokenizers`` library: no transformers import, a load of about a second, a few hundred MB
resident, and the Rust int8 kernels for every matrix product. Any explicit float dtype, CUDA,
or another architecture loads through transformers. The device and weights format are chosen in
``device.py``, the two load routes are ``loading.py``'s, and the tokenizers (ours and the
transformers adapter) live in ``tokenizer.py``; this module builds the model and decodes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_gemma.compute import TORCH_EXTRA, import_torch, torch_installed
from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.base import (
    ChatMessage,
    FinishReason,
    GenerationResult,
    ModelInfo,
    OnText,
    Prompt,
)
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.constrained import ConstrainedDecoder, Vocabulary
from mcp_gemma.llm.decoding import TextStream, sample_token, sample_token_np
from mcp_gemma.llm.device import resolve_device, resolve_dtype, torch_dtype
from mcp_gemma.llm.fast_gemma3 import Gemma3Weights
from mcp_gemma.llm.grammar import Grammar
from mcp_gemma.llm.loading import load_q8, load_transformers
from mcp_gemma.llm.models import ModelStore, ResolvedModel
from mcp_gemma.llm.q8 import Q8Weights, read_config
from mcp_gemma.llm.tokenizer import CheckpointTokenizer, HFTokenizer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

PREFILL_SLICE = 128  # prompt tokens per int8 forward pass (a cancellation point between slices)
FORCED_SLACK = 256  # KV room for the forced span fed after the last counted token

Progress = Any  # Callable[[str], None]; kept loose for the worker-thread callback


class GemmaModel:
    """A loaded Gemma checkpoint: int8 weights on the lean decoder, or a transformers model."""

    def __init__(
        self,
        *,
        config: Any,
        tokenizer: CheckpointTokenizer | HFTokenizer,
        info: ModelInfo,
        model: Any = None,
        q8: Q8Weights | None = None,
        generation: Any = None,
    ) -> None:
        self._config = config
        self._generation = generation if generation is not None else getattr(config, "generation", None)
        self._model = model
        self._q8 = q8
        self._weights: Gemma3Weights | None = None  # fused views for the lean decoder (transformers path)
        self._tokenizer: CheckpointTokenizer | HFTokenizer | None = tokenizer
        self._info = info
        self._fast = info.decoder == "gemma3-fast"
        self._decoder: Any = None
        self._max_positions = int(getattr(config, "max_position_embeddings", 8192))
        self._eos = self._end_ids(tokenizer)
        self._vocab: Vocabulary | None = None
        self._vocab_lock = threading.Lock()

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
        device = resolve_device(settings.device)
        config = read_config(resolved.checkpoint)
        fmt = resolve_dtype(settings.dtype, device, config)
        say(f"loading weights from {resolved.checkpoint} ({device}, {fmt})")
        if fmt == "q8_0":
            try:
                model = cls(**load_q8(resolved, config, store, say))
            except ModelUnavailableError as exc:
                if settings.dtype != "auto":
                    raise
                if not torch_installed():
                    raise ModelUnavailableError(
                        f"{exc}; loading it as bfloat16 instead needs torch and transformers: {TORCH_EXTRA}"
                    ) from exc
                # e.g. sharded or bf16-only safetensors the int8 builder does not read: stay usable
                logger.warning("int8 weights unavailable (%s); loading bfloat16 through transformers", exc)
                say("int8 weights unavailable; loading bfloat16 through transformers")
                fmt = "bfloat16"
        if fmt == "q8_0":
            if model._q8 is not None:  # None: the Rust core's shared pool, every usable core
                model._q8.threads = settings.threads
            threads = settings.threads or len(os.sched_getaffinity(0))
        else:
            # under the import lock: first imports of transformers must not race the embedder's
            torch = import_torch(f"loading {resolved.model_id!r} as {fmt} on {device}")

            if settings.threads:
                torch.set_num_threads(settings.threads)
            threads = torch.get_num_threads()
            model = cls(**load_transformers(resolved, device, torch_dtype(fmt), hf_token))
        model._info = model._info.model_copy(
            update={
                "model_id": resolved.model_id,
                "source": str(resolved.checkpoint),
                "threads": threads,
                "load_seconds": round(time.perf_counter() - started, 3),
                "from_cache": from_cache,
            }
        )
        logger.info(
            "loaded %s in %.1f s (%s)", resolved.model_id, model.info.load_seconds, model.info.model_dump()
        )
        return model

    @property
    def info(self) -> ModelInfo:
        """What is loaded and how it runs."""
        return self._info

    def close(self) -> None:
        """Drop the weights so their memory can be returned."""
        self._model = None
        self._q8 = None
        self._weights = None
        self._tokenizer = None
        self._decoder = None
        self._vocab = None

    def _tok(self) -> CheckpointTokenizer | HFTokenizer:
        if self._tokenizer is None:
            raise ModelUnavailableError("the model was unloaded; it loads again on the next call")
        return self._tokenizer

    def _end_ids(self, tok: CheckpointTokenizer | HFTokenizer) -> set[int]:
        ids: set[int] = set()
        for source in (self._config, self._generation):
            value = getattr(source, "eos_token_id", None)
            ids.update([value] if isinstance(value, int) else list(value or []))
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        if self._info.prompt_style == "chat":
            end_turn = tok.convert_tokens_to_ids("<end_of_turn>")
            if isinstance(end_turn, int) and end_turn != tok.unk_token_id:
                ids.add(end_turn)
        return ids

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt: chat template for chat models, plain text for base models."""
        tok = self._tok()
        if self._info.prompt_style == "chat":
            messages = [ChatMessage(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
            text = tok.render_chat([m.model_dump() for m in messages], add_generation_prompt=True)
            return tok.encode(text, add_special_tokens=False)
        if not isinstance(prompt, str):
            prompt = completion_prompt(prompt)
        return tok.encode(prompt)

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
        tok = self._tok()
        started = time.perf_counter()
        interrupted = _interruption(cancel, started + timeout_s if timeout_s else None)
        ids = self.render(prompt)
        self._check_room(len(ids), max_new_tokens, len(ids) + max_new_tokens)
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little") >> 1
        stream = TextStream(lambda out: tok.decode(out, skip_special_tokens=True), stop)
        finish: FinishReason = "length"
        produced = 0

        with self._runtime(ids, len(ids) + max_new_tokens, temperature, top_p, seed, interrupted) as (
            step,
            sample,
        ):
            logits = step(None)
            while produced < max_new_tokens:
                if (stopped := interrupted()) is not None:
                    finish = stopped
                    break
                token = sample(logits)
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

    def vocabulary(self) -> Vocabulary:
        """Each token's text and the id sets constrained decoding masks with (built once, ~1 s)."""
        with self._vocab_lock:
            if self._vocab is None:
                self._vocab = Vocabulary(self._tok().token_pieces())
            return self._vocab

    def generate_constrained(
        self,
        prompt: Prompt,
        grammar: Grammar,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Write the text ``grammar`` allows (:mod:`mcp_gemma.llm.constrained`); ``finish_reason`` is
        ``stop`` only when the grammar was completed, and ``tokens_out`` counts forced tokens too."""
        import numpy as np

        tok = self._tok()
        started = time.perf_counter()
        interrupted = _interruption(cancel, started + timeout_s if timeout_s else None)
        ids = self.render(prompt)
        decoder = ConstrainedDecoder(
            grammar, self.vocabulary(), lambda t: tok.encode(t, add_special_tokens=False)
        )
        head = decoder.take_feed()
        capacity = len(ids) + len(head) + max_new_tokens + FORCED_SLACK
        self._check_room(len(ids), max_new_tokens, capacity)
        rng = np.random.default_rng(seed) if temperature > 0 else None

        def pick(values: Any) -> int:
            return sample_token_np(values, temperature, top_p, rng)

        finish: FinishReason = "stop"
        produced = len(head)
        with self._runtime(ids + head, capacity, temperature, top_p, seed or 0, interrupted) as (step, _):
            logits: Any = None if decoder.done else step(None)
            while not decoder.done:
                if (stopped := interrupted()) is not None:
                    finish = stopped
                    break
                if produced >= max_new_tokens:
                    finish = "length"
                    break
                values = logits if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()
                decoder.advance(values, pick)
                feed = decoder.take_feed()
                produced += len(feed)
                if feed and not decoder.done:
                    logits = step(feed)
        return GenerationResult(
            text=decoder.text,
            tokens_in=len(ids),
            tokens_out=produced,
            finish_reason=finish,
            seconds=round(time.perf_counter() - started, 4),
            model_id=self._info.model_id,
        )

    def _check_room(self, prompt_tokens: int, max_new_tokens: int, needed: int) -> None:
        """Refuse a generation whose ``needed`` positions exceed the model's context."""
        if needed > self._max_positions:
            raise InvalidInputError(
                f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                f"context of {self._max_positions} tokens; shorten the prompt or ask for fewer tokens"
            )

    @contextlib.contextmanager
    def _runtime(
        self,
        ids: list[int],
        capacity: int,
        temperature: float,
        top_p: float,
        seed: int,
        interrupted: Callable[[], FinishReason | None],
    ) -> Iterator[tuple[Callable[[int | list[int] | None], Any], Callable[[Any], int]]]:
        """(step, sample) for one generation: numpy for the int8 decoder, torch otherwise.

        The int8 prefill runs in slices of ``PREFILL_SLICE`` tokens and stops early when
        ``interrupted`` says so (the loop then sees the same reason before sampling), so a long
        prompt can be cancelled within a slice rather than after the whole prompt; only the last
        slice computes logits.
        """
        if self._q8 is not None:
            import numpy as np

            from mcp_gemma.compute import one_thread_blas
            from mcp_gemma.llm.q8 import Q8Decoder

            decoder = Q8Decoder(self._q8, capacity)
            prompt = np.asarray(ids, dtype=np.int64)
            rng = np.random.default_rng(seed) if temperature > 0 else None

            def q8_step(token: int | list[int] | None) -> Any:
                if token is not None:  # a list: a forced span of constrained decoding, in one pass
                    return decoder.forward(
                        np.asarray(token if isinstance(token, list) else [token], np.int64)
                    )
                # Only the last slice's logits are read: the others skip the output head.
                last = max(0, len(prompt) - 1) // PREFILL_SLICE * PREFILL_SLICE
                for start in range(0, last, PREFILL_SLICE):
                    if start and interrupted() is not None:
                        return None  # the caller sees the same reason and samples nothing
                    decoder.advance(prompt[start : start + PREFILL_SLICE])
                if last and interrupted() is not None:
                    return None
                return decoder.forward(prompt[last:])

            with one_thread_blas.held():
                yield q8_step, lambda logits: sample_token_np(logits, temperature, top_p, rng)
            return
        import torch

        generator = None
        if temperature > 0:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
        with torch.inference_mode():
            yield (
                self._stepper(ids, capacity),
                lambda logits: sample_token(logits.to("cpu"), temperature, top_p, generator),
            )

    def _stepper(self, ids: list[int], capacity: int) -> Any:
        """A function: ``None`` runs the prompt, a token id runs one decode step; both return logits."""
        import torch

        device = self._info.device
        prompt = torch.tensor(ids, dtype=torch.long, device=device)
        if self._fast:
            from mcp_gemma.llm.fast_gemma3 import Gemma3Decoder, weights_from_transformers

            if self._decoder is None:  # fused weights are built once, each call gets its own KV cache
                if self._weights is None:
                    self._weights = weights_from_transformers(self._model)
                self._decoder = Gemma3Decoder(self._weights)
            decoder: Gemma3Decoder = self._decoder.session(capacity)

            def fast_step(token: int | list[int] | None) -> torch.Tensor:
                if token is None:
                    return decoder.forward(prompt)
                ids = token if isinstance(token, list) else [token]
                return decoder.forward(torch.tensor(ids, dtype=torch.long, device=device))

            return fast_step

        from transformers import DynamicCache

        cache = DynamicCache(config=self._model.config)
        model = self._model

        def hf_step(token: int | list[int] | None) -> torch.Tensor:
            if token is None:
                inputs = prompt[None, :]
            else:
                inputs = torch.tensor([token if isinstance(token, list) else [token]], device=device)
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

        if self._model is None:
            if not enabled:
                raise InvalidInputError("int8 weights run on the lean decoder only; load a float dtype")
            return
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


def _interruption(
    cancel: threading.Event | None, deadline: float | None
) -> Callable[[], FinishReason | None]:
    """Why a generation must stop now (``cancelled`` or ``timeout``), else ``None``."""

    def interrupted() -> FinishReason | None:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if deadline is not None and time.perf_counter() > deadline:
            return "timeout"
        return None

    return interrupted
