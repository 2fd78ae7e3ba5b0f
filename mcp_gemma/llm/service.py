"""The async face of the local model: lazy single load, fair queueing, streaming, cancellation.

The server holds one :class:`LLMService`. Nothing is loaded until the first call (or
``preload``); concurrent first callers wait for the same load. Each generation runs the
synchronous backend in a worker thread; when the awaiting task is cancelled the worker's
``threading.Event`` is set and the backend stops before its next token step.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import BaseModel, Field

from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.llm.base import ChatMessage, GenerationResult, LanguageModel, ModelInfo, Prompt
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.grammar import Grammar, schema_grammar
from mcp_gemma.llm.grammar import validate as validate_json
from mcp_gemma.llm.models import ModelStore, models_dir

logger = logging.getLogger(__name__)

TextProgress = Callable[[str], Awaitable[None]]
CANCEL_GRACE_S = 10.0


class LLMStatus(BaseModel):
    """What health_check reports about the local model."""

    configured_model: str = Field(description="The gemma.model setting.")
    loaded: bool = Field(description="Whether the weights are in memory.")
    loading: bool = Field(description="Whether a load is under way.")
    last_error: str | None = Field(None, description="Why the last load failed, if it did.")
    info: ModelInfo | None = Field(None, description="Details of the loaded model.")
    generations: int = Field(0, description="Generations finished since start.")
    queued: int = Field(0, description="Calls waiting for a free generation slot.")


class LLMService:
    """Owns the local model for the server: load once, generate many times."""

    def __init__(
        self,
        settings: GemmaSettings,
        data_dir: Path,
        *,
        hf_token: str | None = None,
        model: LanguageModel | None = None,
    ) -> None:
        self.settings = settings
        self.store = ModelStore(models_dir(settings, data_dir))
        self._hf_token = hf_token
        self._model: LanguageModel | None = model  # an already loaded model may be handed in (CLI, tests)
        self._load_lock = anyio.Lock()
        self._loading = False
        self._last_error: str | None = None
        self._limiter = anyio.CapacityLimiter(settings.concurrency)
        self._waiting = 0
        self._generations = 0
        self._preload: threading.Event | None = None

    # ----------------------------------------------------------------- loading
    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def status(self) -> LLMStatus:
        """A snapshot for health_check; never loads anything."""
        return LLMStatus(
            configured_model=self.settings.model,
            loaded=self._model is not None,
            loading=self._loading,
            last_error=self._last_error,
            info=self._model.info if self._model is not None else None,
            generations=self._generations,
            queued=self._waiting,
        )

    def start_preload(self) -> None:
        """Begin loading in a background thread (``gemma.preload``); early callers wait for it."""
        if self._model is not None or self._preload is not None:
            return
        done = threading.Event()
        self._preload = done
        self._loading = True

        def work() -> None:
            try:
                self._model = self._load_sync(self._thread_progress(None))
            except Exception as exc:  # reported by status() and raised again by the next call
                self._last_error = str(exc)
                logger.warning("preloading %s failed: %s", self.settings.model, exc)
            finally:
                self._loading = False
                done.set()

        threading.Thread(target=work, name="gemma-preload", daemon=True).start()

    async def ensure_loaded(self, progress: TextProgress | None = None) -> LanguageModel:
        """Load the model once in a worker thread; concurrent callers wait for the same load."""
        if self._model is not None:
            return self._model
        async with self._load_lock:
            if self._preload is not None and not self._preload.is_set():
                await anyio.to_thread.run_sync(self._preload.wait)
            if self._model is not None:
                return self._model
            self._loading = True
            try:
                self._model = await anyio.to_thread.run_sync(self._load_sync, self._thread_progress(progress))
                self._last_error = None
            except ModelUnavailableError as exc:
                self._last_error = str(exc)
                raise
            except Exception as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("loading %s failed", self.settings.model)
                raise ModelUnavailableError(f"loading model {self.settings.model!r} failed: {exc}") from exc
            finally:
                self._loading = False
            return self._model

    def _load_sync(self, progress: Callable[[str], None]) -> LanguageModel:
        if self.settings.backend == "llama_cpp":
            from mcp_gemma.llm.llama_cpp import LlamaCppModel

            return LlamaCppModel.load(self.settings, self.store, progress=progress)
        from mcp_gemma.llm.gemma import GemmaModel

        return GemmaModel.load(self.settings, self.store, progress=progress, hf_token=self._hf_token)

    async def unload(self) -> bool:
        """Release the weights once running generations finish; the next call loads again."""
        async with self._load_lock:
            borrowers = [object() for _ in range(self.settings.concurrency)]
            for borrower in borrowers:
                await self._limiter.acquire_on_behalf_of(borrower)
            try:
                model, self._model = self._model, None
                if model is None:
                    return False
                model.close()
                del model
                gc.collect()
                _empty_cuda_cache()
                logger.info("unloaded %s", self.settings.model)
                return True
            finally:
                for borrower in borrowers:
                    self._limiter.release_on_behalf_of(borrower)

    def component_status(self) -> ComponentStatus:
        """The record health_check lists for the local model."""
        status = self.status()
        detail: dict[str, str | int | float | bool | None] = {
            "configured_model": status.configured_model,
            "loading": status.loading,
            "last_error": status.last_error,
            "generations": status.generations,
            "queued": status.queued,
        }
        if status.info is not None:
            detail.update(status.info.model_dump())
        return ComponentStatus(name="gemma", kind="llm", loaded=status.loaded, detail=detail)

    # -------------------------------------------------------------- generation
    def validate(
        self,
        prompt: Prompt,
        max_new_tokens: int | None,
        temperature: float,
        top_p: float,
        stop: Sequence[str] = (),
    ) -> int:
        """Check the request against the limits; return the effective ``max_new_tokens``."""
        if len(stop) > 16 or any(len(s) > 256 for s in stop):
            raise InvalidInputError("stop takes at most 16 strings of at most 256 characters")
        limits = self.settings
        texts = [prompt] if isinstance(prompt, str) else [m.content for m in prompt]
        chars = sum(len(t) for t in texts)
        if chars == 0 or not any(t.strip() for t in texts):
            raise InvalidInputError("the prompt is empty; ask a question")
        if chars > limits.max_prompt_chars:
            raise InvalidInputError(
                f"the prompt has {chars:,} characters, more than "
                f"gemma.max_prompt_chars={limits.max_prompt_chars:,}; shorten the question or context"
            )
        n = limits.default_max_new_tokens if max_new_tokens is None else max_new_tokens
        if not 1 <= n <= limits.max_new_tokens_limit:
            raise InvalidInputError(
                f"max_new_tokens={n} is outside 1..{limits.max_new_tokens_limit} (gemma.max_new_tokens_limit)"
            )
        if not (0.0 <= temperature <= 2.0 and math.isfinite(temperature)):
            raise InvalidInputError(f"temperature={temperature} is outside 0..2 (0 = greedy)")
        if not 0.0 < top_p <= 1.0:
            raise InvalidInputError(f"top_p={top_p} is outside (0, 1]")
        return n

    async def generate(
        self,
        prompt: str | Sequence[ChatMessage],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        timeout_s: float | None = None,
        progress: TextProgress | None = None,
        load_progress: TextProgress | None = None,
    ) -> GenerationResult:
        """Generate in a worker thread, queued fairly; ``progress`` receives the text so far.

        Cancelling the calling task stops the generation before its next token.
        """
        n = self.validate(prompt, max_new_tokens, temperature, top_p, stop)
        model = await self.ensure_loaded(load_progress)
        budget = timeout_s if timeout_s is not None else self.settings.timeout_s
        on_text = self._text_callback(progress)

        def work(cancel: threading.Event) -> GenerationResult:
            return model.generate(
                prompt,
                max_new_tokens=n,
                temperature=temperature,
                top_p=top_p,
                stop=tuple(stop),
                seed=seed,
                timeout_s=budget,
                cancel=cancel,
                on_text=on_text,
            )

        return await self._in_worker(work)

    async def generate_constrained(
        self,
        prompt: str | Sequence[ChatMessage],
        grammar: Grammar,
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        timeout_s: float | None = None,
    ) -> GenerationResult:
        """Generate the text ``grammar`` allows (constrained decoding), in a worker thread, queued fairly."""
        n = self.validate(prompt, max_new_tokens, temperature, top_p)
        model = await self.ensure_loaded()
        constrained = getattr(model, "generate_constrained", None)
        if constrained is None:
            raise InvalidInputError(
                f"structured output needs the default Gemma backend; gemma.backend={self.settings.backend!r} "
                "cannot constrain its decoding"
            )
        budget = timeout_s if timeout_s is not None else self.settings.timeout_s

        def work(cancel: threading.Event) -> GenerationResult:
            result: GenerationResult = constrained(
                prompt,
                grammar,
                max_new_tokens=n,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                timeout_s=budget,
                cancel=cancel,
            )
            return result

        return await self._in_worker(work)

    async def generate_json(
        self,
        prompt: str | Sequence[ChatMessage],
        schema: Mapping[str, Any],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> tuple[GenerationResult, Any]:
        """A JSON value valid for ``schema``, decoded under its grammar; the result and the parsed value.

        Unsupported schema features are refused before the model loads; a value the budget cut short
        is refused with a message saying which budget to raise.
        """
        grammar = schema_grammar(schema)
        self.validate(prompt, max_new_tokens, temperature, top_p)
        result = await self.generate_constrained(
            prompt, grammar, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        if result.finish_reason != "stop":
            raise InvalidInputError(
                f"the structured output was cut short ({result.finish_reason}) after {result.tokens_out} "
                "tokens; raise max_new_tokens or lower the schema's maxLength / maxItems"
            )
        value = json.loads(result.text)
        validate_json(value, schema)
        return result, value

    async def _in_worker(self, work: Callable[[threading.Event], GenerationResult]) -> GenerationResult:
        """Run ``work`` in a worker thread once a generation slot is free; cancel it with the caller."""
        cancel = threading.Event()
        finished = threading.Event()

        def run() -> GenerationResult:
            try:
                return work(cancel)
            finally:
                finished.set()

        self._waiting += 1
        try:
            await self._limiter.acquire()
        finally:
            self._waiting -= 1
        try:
            result = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except BaseException:
            cancel.set()
            # Keep the slot until the worker has seen the flag (one token step), so a
            # cancelled call never overlaps the next one in the queue.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait, CANCEL_GRACE_S)
            raise
        finally:
            self._limiter.release()
        self._generations += 1
        return result

    def _text_callback(self, progress: TextProgress | None) -> Callable[[str], None] | None:
        """Accumulate streamed pieces and forward the text so far to the event loop."""
        if progress is None:
            return None
        parts: list[str] = []

        def on_text(piece: str) -> None:
            parts.append(piece)
            try:
                anyio.from_thread.run(_deliver, progress, "".join(parts))
            except Exception as exc:  # a closed stream must not kill the generation
                logger.debug("dropping progress update: %s", exc)

        return on_text

    @staticmethod
    def _thread_progress(progress: TextProgress | None) -> Callable[[str], None]:
        def say(message: str) -> None:
            logger.info("model load: %s", message)
            if progress is not None:
                try:
                    anyio.from_thread.run(_deliver, progress, message)
                except Exception as exc:
                    logger.debug("dropping load progress: %s", exc)

        return say


async def _deliver(progress: TextProgress, text: str) -> None:
    await progress(text)


def _empty_cuda_cache() -> None:
    import sys

    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
