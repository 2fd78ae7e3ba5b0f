"""Everything in one namespace as JSON Lines, and back: ``mcp-gemma export`` and ``mcp-gemma import``.

The first line is a header (format, version, the embedding model and its dimension, when), then one
line per document (:mod:`mcp_gemma.rag.transfer`) and per memory (:mod:`mcp_gemma.memory.transfer`).
It moves a knowledge base and its memories between machines, between the embedded Redis and an
external one, or into a backup; an import into the same embedding model keeps the vectors, another
model embeds again. Import is idempotent (same ids replace), and a bad line is reported with its
number while the others go in. This module composes two services, so it sits beside ``state``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import IO, Any

from pydantic import BaseModel, Field

from mcp_gemma import __version__
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.memory.transfer import export_memories, import_memories
from mcp_gemma.rag.transfer import export_documents, import_documents
from mcp_gemma.state import AppState
from mcp_gemma.store.redis import redis_guard

FORMAT = "mcp-gemma-export"
VERSION = 1
MAX_LINE_CHARS = 128 * 1024 * 1024
DOC_BATCH = 100
MEMORY_BATCH = 500
MAX_PROBLEMS = 1_000


class TransferProblem(BaseModel):
    """A line that was not imported (or a record left out of an export), and why."""

    line: int | None = Field(description="Line number in the file (1 is the header).")
    id: str | None = None
    error: str


class TransferReport(BaseModel):
    """What an export wrote or an import read."""

    documents: int = Field(description="Documents written.")
    chunks: int = Field(description="Chunks written with them.")
    memories: int = Field(description="Memories written (every tier).")
    reused_vectors: bool = Field(description="Import: the file's embeddings were kept (same model).")
    problems: list[TransferProblem] = Field(default_factory=list)
    seconds: float


def _header(state: AppState) -> dict[str, Any]:
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "mcp_gemma": __version__,
        "embedding_model": state.embeddings.settings.model,
        "embedding_dim": state.embeddings.dim,
        "exported_at": time.time(),
    }


@redis_guard
async def export_all(
    state: AppState, write: Callable[[str], object], *, documents: bool = True, memories: bool = True
) -> TransferReport:
    """Write the header, then every document and memory, one JSON object per line."""
    started = time.perf_counter()
    await state.embeddings.get()  # the header names the model's dimension
    write(json.dumps(_header(state)) + "\n")
    docs = chunks = mems = 0
    if documents:
        async for record in export_documents(state.rag):
            write(json.dumps(record, ensure_ascii=False) + "\n")
            docs += 1
            chunks += len(record["chunks"])
    if memories:
        async for record in export_memories(state.memory):
            write(json.dumps(record, ensure_ascii=False) + "\n")
            mems += 1
    return TransferReport(
        documents=docs,
        chunks=chunks,
        memories=mems,
        reused_vectors=True,
        seconds=round(time.perf_counter() - started, 3),
    )


def read_lines(stream: IO[str]) -> Iterator[str]:
    """The lines of ``stream``, each at most :data:`MAX_LINE_CHARS` (a longer one is an error)."""
    n = 0
    while True:
        line = stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            raise InvalidInputError(f"line {n} is longer than {MAX_LINE_CHARS:,} characters")
        yield line


async def import_all(state: AppState, lines: Iterable[str]) -> TransferReport:
    """Read an export: check the header, then write documents and memories in batches."""
    started = time.perf_counter()
    it = iter(lines)
    try:
        header = json.loads(next(it))
    except StopIteration:
        raise InvalidInputError("the file is empty; an export starts with a header line") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"line 1 is not JSON ({exc}); is this an mcp-gemma export?") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInputError(f"line 1 is not an {FORMAT} header; is this an mcp-gemma export?")
    if header.get("version") != VERSION:
        raise InvalidInputError(
            f"export format version {header.get('version')!r}; this mcp-gemma reads version {VERSION}"
        )
    await state.embeddings.get()
    reuse = (
        header.get("embedding_model") == state.embeddings.settings.model
        and header.get("embedding_dim") == state.embeddings.dim
    )
    problems: list[TransferProblem] = []
    docs: list[tuple[int, dict[str, Any]]] = []
    mems: list[tuple[int, dict[str, Any]]] = []
    totals = {"documents": 0, "chunks": 0, "memories": 0}

    def note(line: int | None, record_id: str | None, error: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(TransferProblem(line=line, id=record_id, error=error))

    async def flush_docs() -> None:
        if docs:
            written, chunks, bad = await import_documents(
                state.rag, [r for _, r in docs], reuse_vectors=reuse
            )
            totals["documents"] += written
            totals["chunks"] += chunks
            lines_of = {str(r.get("id")): n for n, r in docs}
            for record_id, error in bad:
                note(lines_of.get(record_id), record_id, error)
            docs.clear()

    async def flush_mems() -> None:
        if mems:
            written, bad = await import_memories(state.memory, [r for _, r in mems], reuse_vectors=reuse)
            totals["memories"] += written
            lines_of = {str(r.get("id")): n for n, r in mems}
            for record_id, error in bad:
                note(lines_of.get(record_id), record_id, error)
            mems.clear()

    batches: dict[str, tuple[list[tuple[int, dict[str, Any]]], int, Callable[[], Awaitable[None]]]] = {
        "document": (docs, DOC_BATCH, flush_docs),
        "memory": (mems, MEMORY_BATCH, flush_mems),
    }
    for n, line in enumerate(it, start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            note(n, None, f"not JSON: {exc}")
            continue
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind not in batches:
            note(n, None, f"unknown record kind {kind!r}; expected document or memory")
            continue
        batch, size, flush = batches[kind]
        batch.append((n, record))
        if len(batch) >= size:
            await flush()
    await flush_docs()
    await flush_mems()
    return TransferReport(
        **totals,
        reused_vectors=reuse,
        problems=problems,
        seconds=round(time.perf_counter() - started, 3),
    )
