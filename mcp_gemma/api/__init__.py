"""The REST API (FastAPI under ``/v1``), served on the same port as the MCP endpoint.

Routes take the process's :class:`~mcp_gemma.state.AppState` and call the same service functions the
MCP tools call; :mod:`mcp_gemma.api.problems` maps domain errors to ``application/problem+json``.
"""
