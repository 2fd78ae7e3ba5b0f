"""``mcp-gemma export`` and ``mcp-gemma import``: documents and memories as JSON Lines, for backups
and moves between machines or Redis servers (:mod:`mcp_gemma.transfer` does the work)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mcp_gemma.cli.common import fail, run_with_state, settings_from_cli
from mcp_gemma.cli.rag import ConfigOpt, DataDirOpt, RedisOpt

FileArg = Annotated[Path, typer.Argument(help="The JSON Lines file ('-' for stdout / stdin).")]


def export(
    file: FileArg,
    documents: Annotated[bool, typer.Option("--documents/--no-documents", help="Include documents.")] = True,
    memories: Annotated[bool, typer.Option("--memories/--no-memories", help="Include memories.")] = True,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Write every document (text, metadata, chunks, vectors) and memory (every tier, with expiry and
    provenance) of the namespace to a JSON Lines file; the report goes to stderr."""
    from mcp_gemma.transfer import export_all

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    to_stdout = str(file) == "-"
    if not to_stdout and file.exists() and not force:
        raise fail(f"{file} exists; pass --force to overwrite it", 2)
    partial = file.with_name(file.name + ".partial")

    async def call(state: Any) -> Any:
        if to_stdout:
            return await export_all(state, sys.stdout.write, documents=documents, memories=memories)
        with partial.open("w", encoding="utf-8") as out:
            return await export_all(state, out.write, documents=documents, memories=memories)

    try:
        report = run_with_state(settings, call)
    except BaseException as exc:
        if not to_stdout:
            partial.unlink(missing_ok=True)  # no half export left behind
        if isinstance(exc, OSError):
            raise fail(f"cannot write {file}: {exc.strerror or exc}") from None
        raise
    if not to_stdout:
        partial.replace(file)  # a finished export only: an interrupted one never looks complete
    Console(stderr=True).print(
        f"exported {report.documents} documents ({report.chunks} chunks) and {report.memories} memories "
        f"in {report.seconds:.1f} s",
        markup=False,
        highlight=False,
    )


def import_(
    file: FileArg,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Read an export into this namespace (same ids are replaced, so it can be run again); prints the
    JSON report on stdout and exits 1 when some lines were not imported."""
    from mcp_gemma.transfer import import_all, read_lines

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)

    async def call(state: Any) -> Any:
        if str(file) == "-":
            return await import_all(state, read_lines(sys.stdin))
        with file.open(encoding="utf-8") as stream:
            return await import_all(state, read_lines(stream))

    try:
        report = run_with_state(settings, call)
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    err = Console(stderr=True)
    for problem in report.problems:
        err.print(f"line {problem.line}: {problem.id or ''} {problem.error}", markup=False, highlight=False)
    err.print(
        f"imported {report.documents} documents ({report.chunks} chunks) and {report.memories} memories, "
        f"{len(report.problems)} problems; vectors {'kept' if report.reused_vectors else 'recomputed'}",
        markup=False,
        highlight=False,
    )
    typer.echo(report.model_dump_json(indent=2))
    if report.problems:
        raise typer.Exit(1)
