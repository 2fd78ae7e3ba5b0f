"""``mcp-gemma install-client`` and ``uninstall-client``: this install's entry in an MCP client's config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from mcp_gemma.cli.common import fail, settings_from_cli
from mcp_gemma.client_config import Client, Scope, Where, apply, plan_install, plan_uninstall
from mcp_gemma.errors import McpGemmaError

ClientArg = Annotated[Client, typer.Argument(help="claude-desktop, claude-code, vscode or cursor.")]
ScopeOpt = Annotated[
    Scope, typer.Option("--scope", help="user (every project) or project (this folder's config).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the diff; write nothing.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory the server will use.")]


def _env(settings_dir: Path, roots: list[Path], extra: list[str]) -> dict[str, str]:
    """The server's environment: its data dir, its allowed roots, and the --env pairs."""
    env = {"MCP_GEMMA_DATA_DIR": str(settings_dir.expanduser().resolve())}
    if roots:
        env["MCP_GEMMA_ALLOWED_ROOTS"] = json.dumps([str(r.expanduser().resolve()) for r in roots])
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--env takes KEY=VALUE, got {item!r}", 2)
        env[key] = value
    return env


def install_client(
    client: ClientArg,
    scope: ScopeOpt = "user",
    dry_run: DryRunOpt = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="KEY=VALUE for the server's environment (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add (or update) this install in a client's MCP config; other servers are kept, the old file is
    backed up next to it, and the diff is printed."""
    settings = settings_from_cli(config, data_dir=data_dir)
    try:
        change = plan_install(
            client, scope, _env(settings.data_dir, settings.allowed_roots, env or []), Where.here()
        )
    except McpGemmaError as exc:
        raise fail(str(exc)) from None
    _report(change.diff(), change.changed, change.path, dry_run, lambda: apply(change))


def uninstall_client(client: ClientArg, scope: ScopeOpt = "user", dry_run: DryRunOpt = False) -> None:
    """Remove exactly this install's entry from a client's MCP config (the old file is backed up)."""
    try:
        change = plan_uninstall(client, scope, Where.here())
    except McpGemmaError as exc:
        raise fail(str(exc)) from None
    _report(change.diff(), change.changed, change.path, dry_run, lambda: apply(change))


def _report(diff: str, changed: bool, path: Path, dry_run: bool, write: Callable[[], Path | None]) -> None:
    if not changed:
        typer.echo(f"{path}: nothing to change")
        return
    typer.echo(diff, nl=False)
    if dry_run:
        typer.echo(f"(dry run: {path} not written)")
        return
    backup = write()
    typer.echo(f"wrote {path}" + (f" (previous file: {backup})" if backup else ""))
