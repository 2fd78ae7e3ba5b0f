"""Server plugins: modules named in ``server.plugins`` that add tools, resources, prompts and completions.

A plugin is an importable module with a ``register(server, settings)`` function (:class:`ServerPlugin`).
It runs where this server registers its own tools (in the background after ``initialize`` on stdio,
before the port is served on HTTP), after them and before the argument checks of
:mod:`mcp_gemma.server.arguments`, so a plugin's tools, resources and prompts go through the same
middleware as ours: readiness, metrics, access rules and audit, and on HTTP the guard's tokens and
rate limits. A plugin adds completions for its prompts and templates with
:func:`mcp_gemma.server.completion.add_completions`, and its module logger's records reach clients
that asked for log messages, like ours.

A plugin tool **changes data** unless it is declared read-only with
``@server.tool(annotations=ToolAnnotations(read_only_hint=True))``: then a read-only principal may
call it and it is not audited; otherwise it is refused to read-only principals and audited.

A module that cannot be imported or has no ``register`` is a :class:`~mcp_gemma.errors.ConfigError`
(``serve`` checks this before it starts a transport); a ``register`` that raises, or registers a
tool under a name the server already has, is a :class:`PluginError`, which stops an HTTP server
before it serves and, on stdio, answers every request with the reason and makes ``serve`` exit
non-zero.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mcp.server.mcpserver import MCPServer

from mcp_gemma.errors import ConfigError, McpGemmaError

if TYPE_CHECKING:
    from mcp_gemma.settings import Settings
    from mcp_gemma.state import AppState

logger = logging.getLogger(__name__)


class PluginError(McpGemmaError):
    """A server plugin's ``register`` failed; the message names the plugin and the reason."""


@runtime_checkable
class ServerPlugin(Protocol):
    """What a plugin module provides."""

    def register(self, server: MCPServer[AppState], settings: Settings) -> None:
        """Add tools, resources, prompts (``@server.tool()`` …) and completions to ``server``."""


Register = Callable[["MCPServer[AppState]", "Settings"], None]


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin module, imported, and its ``register`` function."""

    name: str
    register: Register


def load_plugins(names: Iterable[str]) -> list[LoadedPlugin]:
    """Import the plugin modules; raise :class:`ConfigError` naming the first one that is unusable."""
    loaded: list[LoadedPlugin] = []
    for name in dict.fromkeys(names):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"server.plugins: cannot import {name!r} ({exc}); install it or put its folder on PYTHONPATH"
            ) from None
        except Exception as exc:  # the plugin's own module code failed
            raise ConfigError(
                f"server.plugins: importing {name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise ConfigError(f"server.plugins: module {name!r} has no register(server, settings) function")
        loaded.append(LoadedPlugin(name, register))
    return loaded


def register_plugins(server: MCPServer[AppState], settings: Settings) -> set[str]:
    """Run every plugin's ``register``; return the names of the plugin tools that change data
    (those not declared read-only)."""
    writes: set[str] = set()
    # The SDK's tool table; a plugin registers into an empty one, so a name it shares with a tool
    # already there (which the SDK would drop with a warning) is found and refused.
    table = server._tool_manager._tools
    for plugin in load_plugins(settings.server.plugins):
        existing = dict(table)
        table.clear()
        try:
            plugin.register(server, settings)
        except Exception as exc:
            logger.debug("plugin %s failed to register", plugin.name, exc_info=True)
            raise PluginError(
                f"server plugin {plugin.name!r} failed to register: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            added = list(table.values())
            table.clear()
            table.update(existing)
        taken = sorted(tool.name for tool in added if tool.name in existing)
        if taken:
            raise PluginError(
                f"server plugin {plugin.name!r} registers tool(s) this server already has: "
                f"{', '.join(taken)}; give them other names"
            )
        table.update((tool.name, tool) for tool in added)
        for tool in added:
            if tool.annotations is None or tool.annotations.read_only_hint is not True:
                writes.add(tool.name)
        logger.info(
            "server plugin %s registered %d tool(s): %s",
            plugin.name,
            len(added),
            ", ".join(tool.name for tool in added) or "none",
        )
    return writes
