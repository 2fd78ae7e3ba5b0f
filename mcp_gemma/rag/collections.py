"""Collections: separate knowledge bases inside one server, one :class:`RagService` each.

Collection ``default`` is the server's knowledge base as it always was: its Redis keys are
``Keys(settings.namespace)`` and its snapshot ``<namespace>.snapshot``, so nothing stored before
collections existed moves. Another collection ``c`` keeps its documents, chunks, change streams,
in-process index and snapshot under the key namespace ``<namespace>#c`` (``#`` is in neither a
namespace's nor a collection's alphabet, so no two pairs share one; the slot-group hash tags stay
``{<namespace>#c/<group>.<salt>}``). Document ids are per collection.

The registry opens a collection on its first use (its index builds lazily, like the default one's)
and at most ``rag.max_collections`` of them, the default included; the state closes them all.
"""

from __future__ import annotations

import logging

from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.errors import QuotaExceededError
from mcp_gemma.health import ComponentStatus
from mcp_gemma.rag.names import COLLECTION_HELP, COLLECTION_PATTERN, DEFAULT_COLLECTION, check_collection
from mcp_gemma.rag.service import RagService, collection_key_namespace
from mcp_gemma.settings import Settings
from mcp_gemma.store.redis import RedisStore

logger = logging.getLogger(__name__)

__all__ = [
    "COLLECTION_HELP",
    "COLLECTION_PATTERN",
    "DEFAULT_COLLECTION",
    "RagCollections",
    "check_collection",
    "collection_key_namespace",
]


class RagCollections:
    """The collections this process has opened, by name; one :class:`RagService` each."""

    def __init__(self, settings: Settings, store: RedisStore, embeddings: EmbeddingService) -> None:
        self._settings = settings
        self._store = store
        self._embeddings = embeddings
        self.max_collections = settings.rag.max_collections
        self.default = RagService(settings, store, embeddings)
        self._open: dict[str, RagService] = {DEFAULT_COLLECTION: self.default}

    def __len__(self) -> int:
        return len(self._open)

    @property
    def names(self) -> list[str]:
        """The names of the open collections, sorted."""
        return sorted(self._open)

    def get(self, name: str = DEFAULT_COLLECTION) -> RagService:
        """The service of collection ``name``, opened on first use (no await: two callers racing for a
        new one get the same service)."""
        found = self._open.get(name)
        if found is not None:
            return found
        check_collection(name)
        if len(self._open) >= self.max_collections:
            raise QuotaExceededError(
                f"this server has {len(self._open)} collections open, its rag.max_collections; "
                f"collection {name!r} was not opened: use one of the open collections or raise "
                "rag.max_collections"
            )
        service = RagService(self._settings, self._store, self._embeddings, collection=name)
        self._open[name] = service
        logger.info("opened collection %r", name)
        return service

    def status(self) -> list[ComponentStatus]:
        """One component per open collection (the default one keeps its name, 'knowledge base')."""
        order = [DEFAULT_COLLECTION, *(n for n in self.names if n != DEFAULT_COLLECTION)]
        return [s for name in order for s in self._open[name].status()]

    async def close(self) -> None:
        """Close every open collection (each saves its index snapshot)."""
        for name in self.names:
            await self._open[name].close()
