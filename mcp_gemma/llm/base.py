"""The interface every local language-model backend implements.

Backends are synchronous: the service runs them in a worker thread, hands them a
``threading.Event`` to cancel, and receives streamed text through ``on_text``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length", "cancelled", "timeout"]
PromptStyle = Literal["chat", "completion"]


class ChatMessage(BaseModel):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What was said.")


class GenerationResult(BaseModel):
    """The outcome of one generation."""

    text: str = Field(description="The generated text, without the prompt and without a matched stop string.")
    tokens_in: int = Field(ge=0, description="Prompt tokens.")
    tokens_out: int = Field(ge=0, description="Generated tokens.")
    finish_reason: FinishReason = Field(
        description="stop (end of text or a stop string), length (token budget), cancelled or timeout."
    )
    seconds: float = Field(ge=0, description="Wall-clock time of the generation.")
    model_id: str = Field(description="Which model answered.")


class ModelInfo(BaseModel):
    """What a loaded model is and how it runs."""

    model_id: str = Field(description="The configured model name, directory or Hub id.")
    source: str = Field(description="Where the weights were read from.")
    device: str = Field(description="cpu or cuda[:n].")
    dtype: str = Field(description="Weights dtype.")
    prompt_style: PromptStyle = Field(
        description="chat (instruction-tuned, chat template) or completion (base)."
    )
    decoder: str = Field(
        description="Which decoding loop runs: 'gemma3-int8' (int8 weights, numpy + Rust), 'gemma3-fast' "
        "(lean torch loop) or 'transformers'."
    )
    threads: int = Field(description="CPU threads of the products (torch, or the Rust pool for int8).")
    load_seconds: float = Field(description="How long loading took.")
    from_cache: bool = Field(description="True when a converted checkpoint from the model cache was used.")


OnText = Callable[[str], None]
Prompt = str | Sequence[ChatMessage]


@runtime_checkable
class LanguageModel(Protocol):
    """A loaded model that turns a prompt into text, synchronously."""

    @property
    def info(self) -> ModelInfo:
        """What is loaded and how it runs."""
        ...

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the rendered prompt occupies."""
        ...

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
        """Generate a continuation; ``on_text`` receives each new piece of text in order."""
        ...

    def close(self) -> None:
        """Release the weights."""
        ...
