"""Domain errors with messages a person can act on.

Every error a service may raise on purpose derives from :class:`McpGemmaError`, a plain exception:
the services do not depend on the MCP SDK. Each front end maps it once: the MCP server turns it into a
tool result with ``isError: true`` carrying this message (:mod:`mcp_gemma.server.app`), the CLI prints
it. Any other exception reaches an MCP client without its text (no stack traces).
"""

from __future__ import annotations


class McpGemmaError(Exception):
    """Base class: a failure the caller can understand and fix."""


class InvalidInputError(McpGemmaError):
    """An argument is out of range, malformed or too large."""


class NotFoundError(McpGemmaError):
    """A document, memory or model that was asked for does not exist."""


class StoreUnavailableError(McpGemmaError):
    """Redis cannot be reached, refused authentication or failed a command."""


class ModelUnavailableError(McpGemmaError):
    """A model could not be loaded or is not configured."""


class AccessDeniedError(McpGemmaError):
    """A path or URL lies outside what the configuration allows."""


class ConfigError(McpGemmaError):
    """The configuration is invalid; the message names the setting."""


class OperationCancelledError(McpGemmaError):
    """The caller cancelled a long operation; nothing partial was stored."""


class ServerBusyError(McpGemmaError):
    """Too much work is queued already; the message says when to retry."""


class QuotaExceededError(McpGemmaError):
    """A limit on stored data (Redis maxmemory, documents or memories per namespace) is reached."""


class RateLimitedError(McpGemmaError):
    """Too many requests from one client or principal; ``retry_after`` says when to try again."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
