"""The ``mcp-gemma`` command line: a front end over the services, one module per command group.

``mcp-gemma serve …`` with plain options starts the server without importing the Typer CLI
(:mod:`mcp_gemma.cli.launch`); everything else, ``--help`` and any option that parser does not know
included, goes to the Typer app in :mod:`mcp_gemma.cli.commands`, which also reaches
:func:`~mcp_gemma.cli.launch.serve_main` for ``serve``.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp_gemma.cli.launch import parse_serve, serve_main

__all__ = ["main", "parse_serve", "serve_main"]


def main() -> None:
    """Console-script entry point."""
    fast = parse_serve(sys.argv[1:])
    if fast is not None:
        sys.exit(serve_main(**fast))
    from mcp_gemma.cli.commands import main as typer_main

    typer_main()


def __getattr__(name: str) -> Any:
    # ``mcp_gemma.cli.app`` and the rest of the Typer CLI, imported on first use.
    import mcp_gemma.cli.commands

    return getattr(mcp_gemma.cli.commands, name)
