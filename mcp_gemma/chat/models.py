"""What the chat service sends and returns: one pydantic model per message of the chat protocol.

Each event has a ``type`` field, so a front end sends ``event.model_dump(mode="json")`` as it is
(the ``/v1/chat`` WebSocket) or renders it (``mcp-gemma chat``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mcp_gemma.agent.models import AgentStep, StopReason
from mcp_gemma.memory.models import MemoryItem
from mcp_gemma.rag.models import Evidence

ChatMode = Literal["model", "agent", "retrieval"]
AnswerKind = Literal["generated", "extractive", "agent", "none"]


class ChatExchange(BaseModel):
    """One message of a person and the answer it got."""

    user: str
    assistant: str
    mode: ChatMode
    at: datetime = Field(description="When the exchange was stored.")


class SessionEvent(BaseModel):
    """A session opened (new or resumed) and its earlier exchanges, oldest first."""

    type: Literal["session"] = "session"
    session_id: str
    history: list[ChatExchange]
    resumed: bool = Field(description="True when earlier exchanges of this session were found in memory.")


class TokenEvent(BaseModel):
    """New text of the answer being generated (append it to what came before)."""

    type: Literal["token"] = "token"
    text: str


class StepEvent(AgentStep):
    """One finished step of the agent (thought, tool call, observation)."""

    type: Literal["step"] = "step"


class EvidenceEvent(BaseModel):
    """Knowledge-base passages the answer is grounded in; the answer cites them as [chunk:ID]."""

    type: Literal["evidence"] = "evidence"
    items: list[Evidence]


class DoneEvent(BaseModel):
    """The finished answer of one message (the streamed tokens, cleaned)."""

    type: Literal["done"] = "done"
    answer: str
    answer_kind: AnswerKind = Field(
        description="generated (the model), extractive (evidence sentences, no model), agent (the ReAct "
        "loop's final answer) or none (nothing to answer from)."
    )
    mode: ChatMode
    sources: list[str] = Field(description="References of the passages the answer was grounded in.")
    cited: list[str] = Field(description="The references the answer text itself cites.")
    model_id: str | None = Field(None, description="The model that answered (None without a model).")
    tokens_out: int = Field(0, description="Generated tokens (0 for extractive and agent answers).")
    finish_reason: str | None = Field(None, description="stop, length or timeout (model answers).")
    stop_reason: StopReason | None = Field(None, description="Why the agent stopped (agent answers).")
    seconds: float = Field(description="Time from the message to the answer.")


class CancelledEvent(BaseModel):
    """The answer in progress was cancelled; nothing of it was stored."""

    type: Literal["cancelled"] = "cancelled"


class ErrorEvent(BaseModel):
    """A message could not be answered; the conversation goes on."""

    type: Literal["error"] = "error"
    detail: str


class SessionMemory(BaseModel):
    """What memory holds of one chat session."""

    session_id: str
    agent_id: str = Field(description="The memory namespace of the session.")
    working: list[MemoryItem] = Field(description="The session's messages in the working tier, newest first.")
    episodic_exchanges: int = Field(description="Exchanges of the session in the episodic tier.")


ChatEvent = TokenEvent | StepEvent | EvidenceEvent
