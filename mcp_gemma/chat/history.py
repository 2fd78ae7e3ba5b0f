"""A chat session's exchanges in the tiered memory, and loading them back to resume it.

Each session has its own memory namespace (``chat.agent_id_prefix`` + the session id). Every message
goes to the working tier (the live conversation, tagged with who said it); every exchange goes to the
episodic tier as one memory, ``"User: …\\nAssistant: …"``, which consolidation can later summarise
into a semantic fact. The episodic records are what a resumed session reads back; the tag
``user_chars:N`` says where the person's text ends, so a message that contains "Assistant:" reads
back exactly.
"""

from __future__ import annotations

import re

from mcp_gemma.chat.models import ChatExchange, ChatMode, SessionMemory
from mcp_gemma.memory.models import MemoryItem
from mcp_gemma.memory.service import MemoryService

USER = "User: "
ASSISTANT = "\nAssistant: "
CHAT_TAG = "chat"
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MODES: tuple[ChatMode, ...] = ("model", "agent", "retrieval")


class ChatHistory:
    """Stores and reads back the exchanges of chat sessions."""

    def __init__(self, memory: MemoryService, prefix: str, limit: int) -> None:
        self.memory = memory
        self.prefix = prefix
        self.limit = limit

    def agent_id(self, session_id: str) -> str:
        """The memory namespace of a session."""
        return self.prefix + session_id

    async def load(self, session_id: str) -> list[ChatExchange]:
        """The session's exchanges, oldest first (at most ``limit``, the newest ones)."""
        items = await self.memory.list_tier("episodic", agent_id=self.agent_id(session_id), limit=self.limit)
        exchanges = [ex for item in items if (ex := exchange_of(item)) is not None]
        return sorted(exchanges, key=lambda ex: ex.at)

    async def add(self, session_id: str, user: str, assistant: str, mode: ChatMode) -> None:
        """Store one exchange: its messages in the working tier, the whole in the episodic tier."""
        agent_id = self.agent_id(session_id)
        await self.memory.store(
            [user], tier="working", tags=(CHAT_TAG, "role:user"), agent_id=agent_id, session_id=session_id
        )
        if assistant.strip():
            await self.memory.store(
                [assistant],
                tier="working",
                tags=(CHAT_TAG, "role:assistant"),
                agent_id=agent_id,
                session_id=session_id,
            )
        limit = self.memory.settings.max_content_chars
        record = (USER + user + ASSISTANT + assistant)[:limit]
        tags = (CHAT_TAG, f"mode:{mode}", f"user_chars:{len(user)}")
        await self.memory.store(
            [record], tier="episodic", tags=tags, agent_id=agent_id, session_id=session_id
        )

    async def overview(self, session_id: str) -> SessionMemory:
        """The session's working-tier messages and how many exchanges the episodic tier holds."""
        agent_id = self.agent_id(session_id)
        working = await self.memory.list_tier("working", agent_id=agent_id, limit=self.limit)
        episodic = await self.memory.list_tier("episodic", agent_id=agent_id, limit=self.limit)
        return SessionMemory(
            session_id=session_id,
            agent_id=agent_id,
            working=working,
            episodic_exchanges=sum(1 for item in episodic if exchange_of(item) is not None),
        )


def exchange_of(item: MemoryItem) -> ChatExchange | None:
    """The exchange an episodic chat memory records (None for other memories)."""
    tags = dict(t.split(":", 1) for t in item.tags if ":" in t)
    text = item.content
    try:
        n = int(tags.get("user_chars", ""))
    except ValueError:
        return None
    mode = tags.get("mode")
    if not text.startswith(USER) or text[len(USER) + n :][: len(ASSISTANT)] != ASSISTANT:
        return None
    for known in MODES:
        if mode == known:
            return ChatExchange(
                user=text[len(USER) : len(USER) + n],
                assistant=text[len(USER) + n + len(ASSISTANT) :],
                mode=known,
                at=item.created_at,
            )
    return None
