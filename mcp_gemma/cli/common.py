"""What every command group shares: settings from the CLI's options, and errors for a person."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import typer

from mcp_gemma.errors import McpGemmaError

T = TypeVar("T")


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


def run_with_state(settings: Any, call: Callable[[Any], Awaitable[T]]) -> T:
    """Open the app state, return ``call(state)``, close it; a domain error exits with its message."""
    from mcp_gemma.state import AppState

    async def main() -> T:
        state = await AppState.open(settings)
        try:
            return await call(state)
        finally:
            await state.close()

    try:
        return anyio.run(main)
    except McpGemmaError as exc:
        raise fail(str(exc)) from None
