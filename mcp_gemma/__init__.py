"""mcp-gemma: an MCP server with a local knowledge base, agent memory and a local Gemma model."""

from mcp_gemma.native import rust_core_version as __version__

__all__ = ["__version__"]
