"""Keep a folder and the knowledge base in step: ``mcp-gemma sync`` and the ``sync_folder`` tool.

One pass ingests every file the glob names (a file whose content hash and metadata are unchanged
costs a read and a hash, nothing more), then removes the documents this folder's syncs created
whose files are gone. Documents a sync creates carry ``sync_root`` (the folder's real path) in their
metadata, so removal never touches a document ingested otherwise or synced from another folder. A
pass is idempotent, and an interrupted one is finished by the next. :func:`watch_folder` runs a
pass, then one after each burst of changes that ``watchfiles`` (inotify) reports.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread

from mcp_gemma.errors import InvalidInputError, NotFoundError
from mcp_gemma.rag import extract
from mcp_gemma.rag.ingest import Progress
from mcp_gemma.rag.models import SyncReport
from mcp_gemma.rag.service import RagService
from mcp_gemma.rag.walk import inside

logger = logging.getLogger(__name__)

SYNC_ROOT = "sync_root"


async def sync_folder(
    rag: RagService, path: str, *, pattern: str = "**/*", progress: Progress | None = None
) -> SyncReport:
    """One pass: ingest changed files under ``path`` by content hash; remove documents of files gone."""
    started = time.perf_counter()
    real, _ = await anyio.to_thread.run_sync(functools.partial(extract.resolve_path, path, rag.allowed_roots))
    if not real.is_dir():
        raise InvalidInputError(
            f"{path!r} is not a folder; sync keeps a folder in step (use ingest for a file)"
        )
    tag = str(real)
    report = await rag.pipeline.ingest_paths(
        [tag], pattern=pattern, metadata={SYNC_ROOT: tag}, progress=progress, strict=False
    )
    notes: list[str] = []
    kept = {r.id for r in report.ingested}
    # A file that exists but was not read this time keeps its documents (it may be back next time).
    failed_sources = await anyio.to_thread.run_sync(
        lambda: {_source(Path(f.source), rag.allowed_roots) for f in report.failed}
    )
    incomplete = [f for f in report.failed if f.reason == "limit" or f.error.startswith("cannot list")]
    removed: list[str] = []
    if incomplete:
        notes.append(
            f"no document was removed: the folder was not read in full ({incomplete[0].source}: "
            f"{incomplete[0].error})"
        )
    else:
        await rag.index.sync()
        stale = sorted(
            e.head.id
            for e in rag.index.matching_docs([])
            if e.metadata.get(SYNC_ROOT) == tag
            and e.head.id not in kept
            and e.metadata.get("source") not in failed_sources
        )
        for doc_id in stale:
            try:
                await rag.delete_document(doc_id)
            except NotFoundError:  # removed meanwhile by someone else: the goal is reached
                continue
            removed.append(doc_id)
    return SyncReport(
        root=tag,
        created=report.created,
        replaced=report.replaced,
        unchanged=report.unchanged,
        changed=[r.id for r in report.ingested if r.status != "unchanged"],
        removed=removed,
        failed=report.failed,
        skipped=report.skipped,
        chunks=report.chunks,
        notes=notes,
        seconds=round(time.perf_counter() - started, 3),
    )


def _source(path: Path, roots: list[Path]) -> str | None:
    """The ``source`` metadata a document from ``path`` has: its path relative to its allowed root."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return None
    root = inside(real, roots)
    return None if root is None else real.relative_to(root).as_posix()


async def watch_folder(
    rag: RagService,
    path: str,
    on_report: Callable[[SyncReport], Awaitable[None]],
    *,
    pattern: str = "**/*",
    stop: anyio.Event | None = None,
) -> None:
    """A pass once the watch is in place, then one after each burst of changes, until ``stop`` is set.

    The first pass runs after the watcher started, so no change is lost between the two; a change
    made while a pass runs is reported by the watcher and leads to the next pass.
    """
    from watchfiles import awatch

    real, _ = await anyio.to_thread.run_sync(functools.partial(extract.resolve_path, path, rag.allowed_roots))
    if not real.is_dir():
        raise InvalidInputError(f"{path!r} is not a folder; sync --watch follows a folder")
    first = True
    async for changes in awatch(
        real, stop_event=stop, recursive=True, yield_on_timeout=True, rust_timeout=500
    ):
        if not changes and not first:
            continue
        first = False
        if changes:
            logger.info("sync %s: %d changes", real, len(changes))
        await on_report(await sync_folder(rag, str(real), pattern=pattern))
