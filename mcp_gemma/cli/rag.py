"""``mcp-gemma ingest PATH…`` and ``mcp-gemma search QUERY``: the knowledge base from the shell.

Both open the same :class:`~mcp_gemma.state.AppState` the server uses and call its
:class:`~mcp_gemma.rag.service.RagService`, so documents ingested here are what the server searches.
The paths given on the command line are readable for this run (a person typed them), on top of
the configured ``allowed_roots``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mcp_gemma.cli.common import fail, run_with_state, settings_from_cli

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded Redis, caches).")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="External Redis URL (default: embedded).")]
CollectionOpt = Annotated[
    str,
    typer.Option(
        "--collection",
        help="Knowledge base: 'default' (the server's) or a collection's name (the tools' collection).",
    ),
]


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.", exists=True)],
    glob: Annotated[
        str, typer.Option("--glob", "-g", help="Files of a folder to read, e.g. '**/*.md'.")
    ] = "**/*",
    collection: CollectionOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Ingest files and folders into the knowledge base: text of any name and encoding, md, rst, html,
    pdf, json, jsonl, also compressed (.gz, .bz2, .xz); every file not ingested is listed with why."""

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    resolved = [p.expanduser().resolve() for p in paths]
    extra = [p if p.is_dir() else p.parent for p in resolved]
    settings = settings.model_copy(update={"allowed_roots": [*settings.allowed_roots, *extra]})
    err = Console(stderr=True)

    async def call(state: Any) -> Any:
        with Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err,
            transient=False,
            disable=not err.is_terminal,  # a log file gets the summary lines, not bar frames
        ) as bar:
            task = bar.add_task("", total=None)

            async def progress(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=total, description=message[-60:])

            return await state.collection(collection).ingest_paths(
                [str(p) for p in resolved], pattern=glob, progress=progress
            )

    report = run_with_state(settings, call)
    for failure in report.failed:
        err.print(f"[yellow]skipped[/] ({failure.reason}) ", end="")
        err.print(f"{failure.source}: {failure.error}", markup=False, highlight=False)
    reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items())
    err.print(
        f"{report.created} created, {report.replaced} replaced, {report.unchanged} unchanged, "
        f"{len(report.failed)} skipped{f' ({reasons})' if reasons else ''}; "
        f"{report.chunks} chunks in {report.seconds:.1f} s"
    )
    typer.echo(report.model_dump_json(indent=2))


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[str, typer.Option("--mode", "-m", help="vector or hybrid.")] = "hybrid",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Results to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    collection: CollectionOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Search the knowledge base by meaning (vector) or by meaning and keywords (hybrid)."""

    if mode not in ("vector", "hybrid"):
        raise fail(f"unknown mode {mode!r}: use vector or hybrid", 2)
    chosen: Literal["vector", "hybrid"] = "vector" if mode == "vector" else "hybrid"
    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)

    async def call(state: Any) -> Any:
        if chosen == "vector":
            return await state.collection(collection).search(query, limit=limit)
        return await state.collection(collection).hybrid_search(query, limit=limit)

    result = run_with_state(settings, call)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    out = Console()
    if not result.hits:
        out.print("no matches")
    for rank, hit in enumerate(result.hits, start=1):
        snippet = " ".join(hit.text.split())[:240]
        out.print(
            f"[bold]{rank}.[/] {hit.doc_id} [dim]chunk {hit.chunk_id} @{hit.start}-{hit.end} "
            f"score {hit.score:.3f}[/]"
        )
        out.print(f"   {snippet}", markup=False, highlight=False)


def sync(
    path: Annotated[Path, typer.Argument(help="The folder to keep in step.", exists=True, file_okay=False)],
    glob: Annotated[
        str, typer.Option("--glob", "-g", help="Files of the folder to read, e.g. '**/*.md'.")
    ] = "**/*",
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep running: sync again after each change (Ctrl-C stops).")
    ] = False,
    collection: CollectionOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Ingest a folder's new and changed files (by content hash) and remove the documents of deleted
    files; one JSON report per pass on stdout (JSON Lines with --watch)."""
    from mcp_gemma.rag.sync import sync_folder, watch_folder

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    folder = path.expanduser().resolve()
    settings = settings.model_copy(update={"allowed_roots": [*settings.allowed_roots, folder]})
    err = Console(stderr=True)

    async def show(report: Any) -> None:
        err.print(
            f"sync {report.root}: {report.created} created, {report.replaced} replaced, "
            f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.failed)} skipped",
            markup=False,
            highlight=False,
        )
        typer.echo(report.model_dump_json())

    async def call(state: Any) -> None:
        if watch:
            await watch_folder(state.collection(collection), str(folder), show, pattern=glob)
        else:
            await show(await sync_folder(state.collection(collection), str(folder), pattern=glob))

    try:
        run_with_state(settings, call)
    except KeyboardInterrupt:
        err.print("sync stopped", markup=False)


def list_documents(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1_000, help="Documents per page.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (see next_offset).")] = 0,
    where: Annotated[
        str | None, typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"lang": "en"}\'.')
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
    collection: CollectionOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """List documents, newest first, with their size and metadata."""
    import json

    try:
        conditions = json.loads(where) if where is not None else None
    except json.JSONDecodeError as exc:
        raise fail(f"--filter is not JSON: {exc}", 2) from None
    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)

    async def call(state: Any) -> Any:
        return await state.collection(collection).list_documents(
            offset=offset, limit=limit, filter=conditions
        )

    page = run_with_state(settings, call)
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    for doc in page.documents:
        meta = json.dumps(doc.metadata, ensure_ascii=False)
        typer.echo(f"{doc.id}  {doc.characters} chars, {doc.chunks} chunks  {meta}")
    more = f"; next: --offset {page.next_offset}" if page.next_offset is not None else ""
    typer.echo(f"{len(page.documents)} of {page.total} documents{more}", err=True)


def get_document(
    doc_id: Annotated[str, typer.Argument(help="Document id (see mcp-gemma list).")],
    chunks: Annotated[bool, typer.Option("--chunks", help="Include the chunks with offsets.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the document as JSON.")] = False,
    collection: CollectionOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Print one document: its metadata, then its text (and its chunks with --chunks)."""
    import json

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)

    async def call(state: Any) -> Any:
        return await state.collection(collection).get_document(doc_id, include_chunks=chunks)

    doc = run_with_state(settings, call)
    if as_json:
        typer.echo(doc.model_dump_json(indent=2))
        return
    err = Console(stderr=True)
    err.print(
        f"{doc.id}: {doc.characters} chars, {doc.chunks} chunks, "
        f"metadata {json.dumps(doc.metadata, ensure_ascii=False)}",
        markup=False,
        highlight=False,
    )
    if doc.chunk_list is not None:
        for chunk in doc.chunk_list:
            err.print(f"chunk {chunk.chunk_id} #{chunk.ordinal} @{chunk.start}-{chunk.end}", markup=False)
    typer.echo(doc.text or "")
