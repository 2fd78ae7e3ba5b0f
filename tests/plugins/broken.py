"""A server plugin whose ``register`` fails, as a plugin with a missing dependency would."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState


def register(server: MCPServer[AppState], settings: Settings) -> None:
    """Fail: the licence file this plugin would read is missing."""
    raise RuntimeError("licence file /nonexistent/licence.key not found")
