"""The local Gemma model: loading, generation, streaming and cancellation (no MCP code)."""
