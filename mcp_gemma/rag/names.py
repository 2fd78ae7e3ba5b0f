"""Collection names: the default one, the pattern a name matches and its help text.

Kept apart from :mod:`mcp_gemma.rag.collections` (which imports the services, redis-py and numpy) so
that the tool declarations can use them without importing a service: ``tools/list`` is answered
before the services load.
"""

from __future__ import annotations

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.security.principals import NAMESPACE_PATTERN

__all__ = ["COLLECTION_HELP", "COLLECTION_PATTERN", "DEFAULT_COLLECTION", "check_collection"]

DEFAULT_COLLECTION = "default"
"""The server's own knowledge base (its keys are the server namespace's, as before collections)."""
COLLECTION_PATTERN = NAMESPACE_PATTERN.pattern
"""A collection name: a principal's namespace (``security/principals``), which governs it."""
COLLECTION_HELP = (
    "Knowledge base to use: 'default' (the server's) or another collection's name (letters, digits, "
    "'_', '.', '-'; up to 64). A principal limited to some namespaces may use the collections of the "
    "same names only."
)


def check_collection(name: str) -> str:
    """``name`` when it is a valid collection name, else :class:`InvalidInputError`."""
    if not NAMESPACE_PATTERN.match(name):
        raise InvalidInputError(
            f"collection {name[:80]!r} is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-'"
        )
    return name
