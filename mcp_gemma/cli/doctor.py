"""``mcp-gemma doctor [--json]``: what this install can and cannot do, and how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded Redis, caches).")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="External Redis URL (default: embedded).")]

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    no_redis: Annotated[bool, typer.Option("--no-redis", help="Skip connecting to Redis.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Check the install (Python, Rust core, data dir, Redis, models, HTTP port, client configs).
    Exit code 1 when a check fails."""
    from mcp_gemma.cli.common import settings_from_cli
    from mcp_gemma.doctor import run_checks

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    report = anyio.run(lambda: run_checks(settings, redis=not no_redis))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for check in report.checks:
            typer.echo(f"[{_MARK[check.status]}] {check.name}: {check.detail}")
            if check.fix:
                typer.echo(f"       fix: {check.fix}")
        typer.echo(
            "mcp-gemma can serve." if report.ok else "mcp-gemma cannot serve: fix the FAIL lines above."
        )
    if not report.ok:
        raise typer.Exit(1)
