"""``mcp-gemma serve …`` without Typer: the option parser of the fast path and :func:`serve_main`.

Typer, Click and Rich cost ~0.2 s, a fifth of a start-up budget that the MCP SDK's own import
mostly takes, so this module imports none of them (nor the server, until it runs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

TRANSPORTS: dict[str, Literal["stdio", "sse", "streamable-http"]] = {
    "stdio": "stdio",
    "sse": "sse",
    "http": "streamable-http",
    "streamable-http": "streamable-http",
}

# Options of ``serve`` that take a value, by spelling, and the parameter each sets.
_VALUE_OPTIONS = {
    "--transport": "transport",
    "-t": "transport",
    "--host": "host",
    "--port": "port",
    "--path": "path",
    "--redis-url": "redis_url",
    "--data-dir": "data_dir",
    "--config": "config",
    "-c": "config",
    "--log-level": "log_level",
}


def _error(message: str, code: int) -> int:
    print(f"mcp-gemma: error: {message}", file=sys.stderr)
    return code


def serve_main(
    *,
    transport: str = "stdio",
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    redis_url: str | None = None,
    data_dir: Path | None = None,
    config: Path | None = None,
    preload: bool = False,
    log_level: str | None = None,
) -> int:
    """Run the MCP server with these CLI overrides; return the exit status (errors go to stderr)."""
    from mcp_gemma.errors import McpGemmaError
    from mcp_gemma.settings import load_settings

    if transport not in TRANSPORTS:
        return _error(f"unknown transport {transport!r}: use stdio, sse or http", 2)
    http: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "path": path}.items() if v is not None
    }
    overrides: dict[str, Any] = {
        "transport": TRANSPORTS[transport],
        "redis_url": redis_url,
        "data_dir": data_dir,
        "log_level": log_level.upper() if log_level else None,
        "http": http or None,
    }
    if preload:
        overrides["gemma"] = {"preload": True}
        overrides["embedding"] = {"preload": True}
    try:
        settings = load_settings(config, **overrides)
    except McpGemmaError as exc:
        return _error(str(exc), 2)
    from mcp_gemma.server.run import serve as run_server

    try:
        run_server(settings)
    except McpGemmaError as exc:
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        pass
    return 0


def parse_serve(args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of :func:`serve_main` for ``serve [options]``, or ``None`` when the
    arguments are anything else (Typer then parses them and gives its own help and errors)."""
    if not args or args[0] != "serve":
        return None
    found: dict[str, Any] = {}
    rest = args[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--preload":
            found["preload"] = True
            continue
        name, eq, value = arg.partition("=")
        key = _VALUE_OPTIONS.get(name)
        if key is None or (eq and not name.startswith("--")):
            return None
        if not eq:
            if i >= len(rest):
                return None
            value = rest[i]
            i += 1
        if key == "port":
            if not value.isdigit():
                return None
            found[key] = int(value)
        elif key in {"data_dir", "config"}:
            found[key] = Path(value)
        else:
            found[key] = value
    return found
