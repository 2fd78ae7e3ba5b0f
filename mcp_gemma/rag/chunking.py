"""Split a document into overlapping chunks (the Rust chunker), keeping offsets into the text."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_gemma import native
from mcp_gemma.rag.config import RagSettings


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a document: ``text == document[start:end]``."""

    ordinal: int
    start: int
    end: int
    text: str


def split(text: str, settings: RagSettings) -> list[Chunk]:
    """Chunks of ``text`` by the configured size, overlap and mode; whitespace-only windows are dropped."""
    overlap = min(settings.chunk_overlap, settings.chunk_size // 2)
    spans = native.chunk_text(text, settings.chunk_size, overlap, settings.chunk_mode)
    chunks: list[Chunk] = []
    for start, end in spans:
        piece = text[start:end]
        if piece.strip():
            chunks.append(Chunk(len(chunks), start, end, piece))
    return chunks
