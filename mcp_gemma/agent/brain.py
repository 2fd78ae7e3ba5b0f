"""Who thinks for the agent: the local Gemma (:class:`LocalBrain`) or the client's model through a
:class:`~mcp_gemma.llm.sampling.Sampler` (:class:`ClientBrain`).

When the sampler cannot reach the client mid-call it raises
:class:`~mcp_gemma.llm.sampling.SamplingRequired`; ``run_agent`` answers with an ``InputRequiredResult``
and resumes the loop from its sealed checkpoint when the client retries with the model's reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from mcp_gemma.llm.sampling import Sampler, SamplingRequest

if TYPE_CHECKING:
    from mcp_gemma.llm.grammar import Grammar
    from mcp_gemma.llm.service import LLMService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One message of the agent's conversation."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class BrainRequest:
    """What the loop asks the brain for: a system prompt, the conversation, limits."""

    system: str
    turns: Sequence[Turn]
    max_tokens: int
    temperature: float = 0.0
    stop: Sequence[str] = field(default_factory=tuple)
    prefix: str = ""
    """How the reply starts. A brain that can prefill (a local base model) writes it for the model and
    returns it as part of the reply; others ignore it."""
    action: ActionRequest | None = None
    """The step as a JSON action under a grammar, for a brain that constrains its decoding
    (``constrains_actions``); other brains answer ``system`` and ``turns`` as usual."""


@dataclass(frozen=True)
class ActionRequest:
    """A step to decode under a grammar: the whole prompt, and a fresh grammar for each call."""

    prompt: str
    grammar: Callable[[], Grammar]


class Brain(Protocol):
    """Turns the agent's conversation into the next step's text."""

    @property
    def name(self) -> str:
        """'local:<model>' or 'client'."""
        ...

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        """The model's reply. ``key`` names this call uniquely within the run (for resumption)."""
        ...


class LocalBrain:
    """The local Gemma through :class:`LLMService` (streams, honours cancellation)."""

    def __init__(self, llm: LLMService) -> None:
        self.llm = llm

    @property
    def name(self) -> str:
        return f"local:{self.llm.settings.model}"

    @property
    def constrains_actions(self) -> bool:
        """Whether actions are decoded under the action grammar (the default Gemma backend can)."""
        return self.llm.settings.backend == "transformers"

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        from mcp_gemma.llm.base import ChatMessage

        model = await self.llm.ensure_loaded()
        if request.action is not None and self.constrains_actions:
            prompt = request.action.prompt
            result = await self.llm.generate_constrained(
                prompt
                if model.info.prompt_style == "completion"
                else [ChatMessage(role="user", content=prompt)],
                request.action.grammar(),
                max_new_tokens=request.max_tokens,
                temperature=request.temperature,
            )
            logger.debug(
                "local brain %s (constrained): %d tokens, %s", key, result.tokens_out, result.finish_reason
            )
            return result.text
        if model.info.prompt_style == "completion":
            # A base model continues text: show it a transcript, start its reply for it and stop at the
            # end of the line (the examples put every reply on one line).
            result = await self.llm.generate(
                completion_transcript(request) + request.prefix,
                max_new_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=("\n", *request.stop),
            )
            logger.debug("local brain %s: %d tokens, %s", key, result.tokens_out, result.finish_reason)
            return request.prefix + result.text
        messages = [ChatMessage(role="system", content=request.system)]
        messages += [ChatMessage(role=t.role, content=t.content) for t in request.turns]
        result = await self.llm.generate(
            messages,
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=tuple(request.stop),
        )
        logger.debug("local brain %s: %d tokens, %s", key, result.tokens_out, result.finish_reason)
        return result.text


def completion_transcript(request: BrainRequest) -> str:
    """The conversation as plain text ending where the assistant speaks (for base models)."""
    lines = [request.system.strip(), ""]
    lines += [f"{'User' if t.role == 'user' else 'Assistant'}: {t.content}" for t in request.turns]
    lines.append("Assistant: ")
    return "\n".join(lines)


class ClientBrain:
    """The client's model, through ``sampler`` (MCP sampling, in the server)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    @property
    def name(self) -> str:
        return "client"

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        sampling = SamplingRequest(
            system=request.system,
            messages=[(t.role, t.content) for t in request.turns],
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=tuple(request.stop),
            model_hint="gemma",
        )
        return (await self.sampler.sample(sampling, key=key)).text
