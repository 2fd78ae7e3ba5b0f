"""Settings of the chat service (the ``/v1/chat`` WebSocket and ``mcp-gemma chat``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatSettings(BaseModel):
    """Limits and history of chat sessions."""

    max_message_chars: int = Field(4_000, ge=1, le=100_000, description="Longest chat message accepted.")
    max_frame_bytes: int = Field(
        64 * 1024, ge=1_024, le=8 * 1024 * 1024, description="Largest WebSocket frame a chat client may send."
    )
    history_turns: int = Field(
        4, ge=0, le=50, description="Earlier exchanges of the session shown to the model with a new message."
    )
    history_limit: int = Field(
        200, ge=1, le=5_000, description="Most exchanges a resumed session loads back from memory."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Token budget of a chat answer (None = gemma.default_max_new_tokens)."
    )
    kb_top_k: int = Field(
        4, ge=1, le=20, description="Knowledge-base passages retrieved for a grounded turn."
    )
    agent_id_prefix: str = Field(
        "chat-",
        pattern=r"^[A-Za-z0-9_.:-]{1,32}$",
        description="Memory namespace of a session: this prefix and the session id.",
    )
