"""mcp-gemma: an MCP server with a local knowledge base, agent memory and a local Gemma model."""

from mcp_gemma._rust_core import __version__

__all__ = ["__version__"]
