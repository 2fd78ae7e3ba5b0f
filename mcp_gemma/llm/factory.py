"""Build the LLM service from settings without importing torch or loading anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_gemma.llm.service import LLMService
    from mcp_gemma.settings import Settings


def build_llm(settings: Settings) -> LLMService:
    """An unloaded :class:`LLMService`; the model loads on first use (or on ``preload``)."""
    from mcp_gemma.llm.service import LLMService

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return LLMService(settings.gemma, settings.data_dir, hf_token=token)
