"""The ``mcp-gemma`` Typer app: the root, ``serve`` and ``config``, and the command groups of the other
modules (:mod:`mcp_gemma.cli` starts ``serve`` without Typer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mcp_gemma import __version__
from mcp_gemma.cli.chat import chat
from mcp_gemma.cli.clients import install_client, uninstall_client
from mcp_gemma.cli.common import settings_from_cli
from mcp_gemma.cli.doctor import doctor, health
from mcp_gemma.cli.launch import serve_main
from mcp_gemma.cli.memory import memory_app
from mcp_gemma.cli.model import ask, model_app
from mcp_gemma.cli.rag import get_document, ingest, list_documents, search, sync
from mcp_gemma.cli.transfer import export, import_
from mcp_gemma.errors import McpGemmaError

app = typer.Typer(
    name="mcp-gemma",
    help="MCP server with a local knowledge base, agent memory and a local Gemma model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(memory_app, name="memory")
app.add_typer(model_app, name="model")
app.command("ask")(ask)
app.command("chat")(chat)
app.command("ingest")(ingest)
app.command("search")(search)
app.command("sync")(sync)
app.command("list")(list_documents)
app.command("get")(get_document)
app.command("export")(export)
app.command("import")(import_)
app.command("doctor")(doctor)
app.command("health")(health)
app.command("install-client")(install_client)
app.command("uninstall-client")(uninstall_client)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (keys mirror the settings).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded Redis, caches).")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="External Redis URL (default: embedded).")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mcp-gemma {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version_callback, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """mcp-gemma: knowledge base, memory and Gemma over MCP."""


@app.command()
def serve(
    transport: Annotated[
        str, typer.Option("--transport", "-t", help="stdio, sse or http (Streamable HTTP).")
    ] = "stdio",
    host: Annotated[str | None, typer.Option(help="Bind address for sse/http (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port for sse/http (default 8765).")] = None,
    path: Annotated[str | None, typer.Option(help="Streamable HTTP path (default /mcp).")] = None,
    redis_url: RedisOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    preload: Annotated[bool, typer.Option("--preload", help="Load the models at start.")] = False,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
) -> None:
    """Run the MCP server."""
    code = serve_main(
        transport=transport,
        host=host,
        port=port,
        path=path,
        redis_url=redis_url,
        data_dir=data_dir,
        config=config,
        preload=preload,
        log_level=log_level,
    )
    if code:
        raise typer.Exit(code)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Print the effective settings, one dotted key per line (or as JSON), secrets masked."""
    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    if as_json:
        typer.echo(json.dumps(settings.masked(), indent=2, sort_keys=True))
        return

    def lines(value: object, prefix: str) -> list[str]:
        if isinstance(value, dict) and value:
            return [line for key in sorted(value) for line in lines(value[key], f"{prefix}{key}.")]
        return [f"{prefix[:-1]} = {json.dumps(value)}"]

    typer.echo("\n".join(lines(settings.masked(), "")))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except McpGemmaError as exc:
        typer.echo(f"mcp-gemma: error: {exc}", err=True)
        sys.exit(1)
