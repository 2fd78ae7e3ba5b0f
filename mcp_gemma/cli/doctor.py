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


def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    metrics: Annotated[
        bool, typer.Option("--metrics", help="Also report memory, CPU time, threads.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """What health_check reports: Redis reachability and latency, versions, index sizes, loaded models.
    Exit code 1 when Redis does not answer."""
    from mcp_gemma.cli.common import run_with_state, settings_from_cli
    from mcp_gemma.report import health_report

    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    report = run_with_state(settings, lambda state: health_report(state, include_metrics=metrics))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        redis = report.redis
        where = f"{redis.kind} {redis.where}"
        typer.echo(f"status: {report.status} (mcp-gemma {report.version})")
        if redis.ok:
            typer.echo(f"redis: {where}, {redis.version}, {redis.latency_ms} ms")
        else:
            typer.echo(f"redis: {where}: {redis.error}")
        for part in report.components:
            detail = ", ".join(f"{k}={v}" for k, v in part.detail.items() if v is not None)
            typer.echo(
                f"{part.name}: {'loaded' if part.loaded else 'not loaded'}{'; ' + detail if detail else ''}"
            )
        typer.echo("versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()))
        if report.metrics is not None:
            m = report.metrics
            cpu = m.cpu_user_s + m.cpu_system_s
            typer.echo(f"process: rss {m.rss_mib} MiB, cpu {cpu:.2f} s, threads {m.threads}")
    if report.status != "ok":
        raise typer.Exit(1)
