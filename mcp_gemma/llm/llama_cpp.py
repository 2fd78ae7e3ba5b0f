"""Optional GGUF backend on llama.cpp (``pip install 'mcp-gemma[llama]'``, ``gemma.backend=llama_cpp``).

Same contract as the transformers backend: our own loop over llama.cpp's token generator, so
stop strings, streaming, cancellation between token steps and the time budget behave alike.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.base import ChatMessage, FinishReason, GenerationResult, ModelInfo, OnText, Prompt
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.convert import Progress
from mcp_gemma.llm.decoding import TextStream
from mcp_gemma.llm.models import ModelStore

CONTEXT_TOKENS = 8192


class LlamaCppModel:
    """A GGUF file loaded by llama-cpp-python."""

    def __init__(self, llm: Any, info: ModelInfo) -> None:
        self._llm = llm
        self._info = info
        self._lock = threading.Lock()  # one llama context: generations take turns

    @classmethod
    def load(
        cls, settings: GemmaSettings, store: ModelStore, *, progress: Progress | None = None
    ) -> LlamaCppModel:
        """Open the configured GGUF (the packaged one by default)."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelUnavailableError(
                "gemma.backend='llama_cpp' needs llama-cpp-python: pip install 'mcp-gemma[llama]'"
            ) from exc
        started = time.perf_counter()
        resolved = store.resolve(settings.model)
        gguf = store.assemble_packaged() if resolved.kind == "packaged" else resolved.gguf
        if gguf is None:
            raise ModelUnavailableError(
                f"gemma.backend='llama_cpp' reads GGUF files; {settings.model!r} is a transformers checkpoint"
            )
        if progress:
            progress(f"opening {gguf.name} with llama.cpp")
        threads = settings.threads or min(os.cpu_count() or 1, 8)
        try:
            llm = Llama(
                model_path=str(gguf),
                n_threads=threads,
                n_threads_batch=threads,
                n_ctx=CONTEXT_TOKENS,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailableError(f"llama.cpp could not open {gguf}: {exc}") from exc
        chat = "tokenizer.chat_template" in (llm.metadata or {})
        info = ModelInfo(
            model_id=resolved.model_id,
            source=str(gguf),
            device="cpu",
            dtype="gguf",
            prompt_style="chat" if chat else "completion",
            decoder="llama.cpp",
            threads=threads,
            load_seconds=round(time.perf_counter() - started, 3),
            from_cache=False,
        )
        return cls(llm, info)

    @property
    def info(self) -> ModelInfo:
        """What is loaded and how it runs."""
        return self._info

    def close(self) -> None:
        """Free the llama.cpp context."""
        if self._llm is not None:
            self._llm.close()
        self._llm = None

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt (chat template for chat models, plain text otherwise)."""
        from mcp_gemma.llm.gemma import completion_prompt

        if self._info.prompt_style == "chat":
            messages = [ChatMessage(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
            text = "".join(
                f"<start_of_turn>{'model' if m.role == 'assistant' else 'user'}\n{m.content}<end_of_turn>\n"
                for m in messages
            )
            return list(
                self._llm.tokenize(f"{text}<start_of_turn>model\n".encode(), add_bos=True, special=True)
            )
        text = prompt if isinstance(prompt, str) else completion_prompt(prompt)
        return list(self._llm.tokenize(text.encode(), add_bos=True))

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
        """Generate with llama.cpp, one token step at a time."""
        if self._llm is None:
            raise ModelUnavailableError("the model was unloaded; it loads again on the next call")
        started = time.perf_counter()
        deadline = started + timeout_s if timeout_s else None
        llm = self._llm
        with self._lock:
            ids = self.render(prompt)
            if len(ids) + max_new_tokens > CONTEXT_TOKENS:
                raise InvalidInputError(
                    f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                    f"llama.cpp context of {CONTEXT_TOKENS} tokens"
                )
            if seed is not None:
                llm.set_seed(seed)
            end_ids = {llm.token_eos()}
            end_ids.update(llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)[:1])
            stream = TextStream(lambda out: llm.detokenize(list(out)).decode("utf-8", errors="replace"), stop)
            finish: FinishReason = "length"
            produced = 0
            llm.reset()
            tokens = llm.generate(
                ids, temp=temperature, top_p=top_p, top_k=0 if temperature > 0 else 1, reset=True
            )
            for token in tokens:
                produced += 1
                if token in end_ids:
                    finish = "stop"
                    break
                piece = stream.push(int(token))
                if piece and on_text is not None:
                    on_text(piece)
                if stream.stopped:
                    finish = "stop"
                    break
                if produced >= max_new_tokens:
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    finish = "timeout"
                    break
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
