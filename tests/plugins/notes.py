"""A small real server plugin: notes kept in the process, a prompt and its completion.

``notes_add`` changes data (no read-only declaration), ``notes_count`` is declared read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_gemma.server.completion import add_completions
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState

logger = logging.getLogger(__name__)

LANGUAGES = ["english", "esperanto", "french"]


class NotesReport(BaseModel):
    """How many notes there are, and the newest."""

    count: int
    newest: str | None


def register(server: MCPServer[AppState], settings: Settings) -> None:
    """Add ``notes_add``, ``notes_count`` and the ``notes_greeting`` prompt."""
    notes: list[str] = []

    @server.tool()
    def notes_add(
        text: Annotated[str, Field(min_length=1, max_length=200, description="The note.")],
    ) -> NotesReport:
        """Keep a note (in this server process)."""
        notes.append(text)
        logger.info("note %d kept", len(notes))
        return NotesReport(count=len(notes), newest=text)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def notes_count() -> NotesReport:
        """Count the notes."""
        return NotesReport(count=len(notes), newest=notes[-1] if notes else None)

    @server.prompt()
    def notes_greeting(
        language: Annotated[str, Field(max_length=20, description="Language of the greeting.")],
    ) -> list[Message]:
        """Greet in a language."""
        return [UserMessage(f"Say hello in {language}.")]

    async def languages(state: AppState, prefix: str, context: Mapping[str, str]) -> list[str]:
        return LANGUAGES

    add_completions(server, "ref/prompt", "notes_greeting", {"language": languages})
