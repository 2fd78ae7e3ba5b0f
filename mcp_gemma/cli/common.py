"""What every command group shares: settings from the CLI's options, and errors for a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mcp_gemma.errors import McpGemmaError


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for a person to stderr and return the exit to raise."""
    typer.echo(f"mcp-gemma: error: {message}", err=True)
    return typer.Exit(code)


def settings_from_cli(config: Path | None, **overrides: Any) -> Any:
    """Load settings with CLI overrides (nested dicts merge into the file and environment)."""
    from mcp_gemma.settings import load_settings

    try:
        return load_settings(config, **overrides)
    except McpGemmaError as exc:
        raise fail(str(exc), 2) from None
