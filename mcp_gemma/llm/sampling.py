"""Asking the client's model for text: the small protocol the reason service and the agent depend on.

A front end that can reach the client's model implements :class:`Sampler` (the MCP server does,
through ``sampling/createMessage``, in :mod:`mcp_gemma.server.sampling`); the services only see
requests and replies as plain data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class SamplingRequest:
    """One request to the client's model: a system prompt, the conversation, limits."""

    system: str
    messages: Sequence[tuple[Literal["user", "assistant"], str]]
    max_tokens: int
    temperature: float = 0.0
    stop: Sequence[str] = field(default_factory=tuple)
    model_hint: str | None = None
    """A model family to prefer (sent as a hint with balanced priorities), or none."""


@dataclass(frozen=True)
class SampledReply:
    """What the client's model answered."""

    text: str
    model: str
    stop_reason: str | None = None


class SamplingRequired(Exception):
    """The client must answer ``request`` before the call can go on (in another round).

    ``request`` is the front end's own form of the request (for MCP a ``CreateMessageRequest``); the
    front end sends it and, when the client retries with the answer, resumes under ``key``.
    """

    def __init__(self, key: str, request: object) -> None:
        super().__init__(key)
        self.key = key
        self.request = request


class Sampler(Protocol):
    """The client's model, as far as the services are concerned."""

    async def sample(self, request: SamplingRequest, *, key: str) -> SampledReply:
        """The model's reply to ``request``. ``key`` names the call uniquely within one tool call.

        Raises :class:`SamplingRequired` when the answer must come in a later round.
        """
        ...
