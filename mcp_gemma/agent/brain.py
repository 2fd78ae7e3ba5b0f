"""Who thinks for the agent: the local Gemma (:class:`LocalBrain`) or the client's model through MCP
sampling (:class:`ClientBrain`).

On handshake-era connections (≤ 2025-11-25) the client brain sends ``sampling/createMessage`` mid-call.
On 2026-07-28+ connections the server may not send requests, so the brain raises
:class:`SamplingRequired`; ``run_agent`` answers with an ``InputRequiredResult`` and resumes the loop
from its sealed checkpoint when the client retries with the model's reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcp_types import (
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ModelHint,
    ModelPreferences,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)

from mcp_gemma.errors import McpGemmaError, ModelUnavailableError

if TYPE_CHECKING:
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


class Brain(Protocol):
    """Turns the agent's conversation into the next step's text."""

    @property
    def name(self) -> str:
        """'local:<model>' or 'client'."""
        ...

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        """The model's reply. ``key`` names this call uniquely within the run (for resumption)."""
        ...


class SamplingRequired(Exception):
    """The client must answer ``request`` before the loop can go on (2026-07-28+ connections)."""

    def __init__(self, key: str, request: CreateMessageRequest) -> None:
        super().__init__(key)
        self.key = key
        self.request = request


class LocalBrain:
    """The local Gemma through :class:`LLMService` (streams, honours cancellation)."""

    def __init__(self, llm: LLMService) -> None:
        self.llm = llm

    @property
    def name(self) -> str:
        return f"local:{self.llm.settings.model}"

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        from mcp_gemma.llm.base import ChatMessage

        model = await self.llm.ensure_loaded()
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


def client_supports_sampling(session: Any) -> bool:
    """Whether the connected client declared the sampling capability."""
    try:
        return bool(session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())))
    except Exception:  # a session without capability data: treat as no sampling
        return False


def sampling_request(request: BrainRequest) -> CreateMessageRequest:
    """The ``sampling/createMessage`` request for one brain call."""
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[
                SamplingMessage(role=t.role, content=TextContent(type="text", text=t.content))
                for t in request.turns
            ],
            system_prompt=request.system,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop_sequences=list(request.stop) or None,
            model_preferences=ModelPreferences(
                hints=[ModelHint(name="gemma")], intelligence_priority=0.5, speed_priority=0.5
            ),
        )
    )


def sampled_text(result: Any) -> str:
    """The text of a sampling result (``CreateMessageResult`` or its dict form)."""
    if isinstance(result, Mapping):
        result = CreateMessageResult.model_validate(result)
    content = getattr(result, "content", None)
    blocks = content if isinstance(content, list) else [content]
    texts = [b.text for b in blocks if isinstance(b, TextContent)]
    if not texts:
        raise McpGemmaError("the client's model answered without text; the agent needs text replies")
    return "".join(texts)


class ClientBrain:
    """The client's model through MCP sampling."""

    def __init__(self, session: Any, *, back_channel: bool, answers: Mapping[str, str] | None = None) -> None:
        self.session = session
        self.back_channel = back_channel
        self.answers = dict(answers or {})

    @property
    def name(self) -> str:
        return "client"

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        if key in self.answers:
            return self.answers.pop(key)
        message = sampling_request(request)
        if not self.back_channel:
            raise SamplingRequired(key, message)
        try:
            result = await self.session.send_request(message, CreateMessageResult)
        except McpGemmaError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"the client's model did not answer the sampling request: {exc}"
            ) from exc
        return sampled_text(result)
