"""A server plugin that registers a tool under a name the server already uses."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState


def register(server: MCPServer[AppState], settings: Settings) -> None:
    """Add a second ``health_check``."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def health_check() -> str:
        """Always fine."""
        return "fine"
