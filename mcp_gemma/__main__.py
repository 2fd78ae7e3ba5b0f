"""``python -m mcp_gemma`` runs the CLI."""

from mcp_gemma.cli import main

if __name__ == "__main__":
    main()
