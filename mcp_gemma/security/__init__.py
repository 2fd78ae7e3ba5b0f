"""Who may do what over the network, and how often: principals, rate limits, lockout, the audit log.

Plain Python over the settings (no HTTP framework, no MCP SDK): the HTTP guard
(:mod:`mcp_gemma.server.run`), the MCP middleware and the REST routes all use it.
"""
