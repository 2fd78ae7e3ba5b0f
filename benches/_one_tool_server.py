"""The peer of bench_startup: the smallest useful server on the same SDK (one tool, stdio)."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("one-tool")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")
