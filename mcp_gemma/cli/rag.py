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


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.", exists=True)],
    glob: Annotated[
        str, typer.Option("--glob", "-g", help="Files of a folder to read, e.g. '**/*.md'.")
    ] = "**/*",
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
        ) as bar:
            task = bar.add_task("", total=None)

            async def progress(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=total, description=message[-60:])

            return await state.rag.ingest_paths([str(p) for p in resolved], pattern=glob, progress=progress)

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
            return await state.rag.search(query, limit=limit)
        return await state.rag.hybrid_search(query, limit=limit)

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
            await watch_folder(state.rag, str(folder), show, pattern=glob)
        else:
            await show(await sync_folder(state.rag, str(folder), pattern=glob))

    try:
        run_with_state(settings, call)
    except KeyboardInterrupt:
        err.print("sync stopped", markup=False)
