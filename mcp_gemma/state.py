"""The application state built once per process and reached through the request context."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from mcp_gemma.errors import McpGemmaError
from mcp_gemma.metrics import CallMetrics
from mcp_gemma.security.audit import AuditLog
from mcp_gemma.settings import Settings

if TYPE_CHECKING:
    # The services import redis-py, numpy and the Rust core: :meth:`AppState.open` imports them,
    # so that the transport can answer ``initialize`` before they load.
    from mcp_gemma.embeddings.service import EmbeddingService
    from mcp_gemma.health import ComponentStatus
    from mcp_gemma.llm.service import LLMService
    from mcp_gemma.memory.service import MemoryService
    from mcp_gemma.rag.collections import RagCollections
    from mcp_gemma.rag.service import RagService
    from mcp_gemma.store.redis import RedisStore

logger = logging.getLogger(__name__)


@dataclass
class AppState:
    """Long-lived services of one server process."""

    settings: Settings
    store: RedisStore
    embeddings: EmbeddingService
    memory: MemoryService
    rag: RagService
    """The default collection's service (the server's knowledge base); :meth:`collection` for others."""
    llm: LLMService
    collections: RagCollections
    """Every collection (knowledge base) this process has opened, ``default`` (:attr:`rag`) first."""
    request_state_key: str = ""
    """Seals the state a paused tool call resumes from; the same in every replica (see
    ``Settings.request_state_key``)."""
    started_at: float = field(default_factory=time.monotonic)
    metrics: CallMetrics = field(default_factory=CallMetrics)
    audit_log: AuditLog | None = None

    @classmethod
    async def open(cls, settings: Settings) -> AppState:
        """Connect to Redis and build the services (models load lazily, later)."""
        await anyio.to_thread.run_sync(import_services)
        from mcp_gemma.embeddings.service import EmbeddingService
        from mcp_gemma.llm.factory import build_llm
        from mcp_gemma.memory.service import MemoryService
        from mcp_gemma.rag.collections import RagCollections
        from mcp_gemma.store.redis import RedisStore

        store = await RedisStore.open(settings)
        try:
            secret = settings.request_state_key
            request_state_key = (
                secret.get_secret_value()
                if secret is not None
                else await store.shared_secret("request-state", create=False)
            )
        except BaseException:
            await store.close()
            raise
        embeddings = EmbeddingService(settings.embedding)
        if missing := embeddings.missing_weights():
            logger.warning("%s; until then every search, ingest and memory call fails", missing)
        if settings.embedding.preload:
            embeddings.start_preload()
        memory = MemoryService(settings.memory, store, embeddings)
        collections = RagCollections(settings, store, embeddings)
        llm = build_llm(settings)  # nothing loads until the first generation (or gemma.preload)
        if settings.gemma.preload:
            llm.start_preload()
        state = cls(
            settings=settings,
            store=store,
            embeddings=embeddings,
            memory=memory,
            rag=collections.default,
            llm=llm,
            collections=collections,
            audit_log=AuditLog.in_dir(settings.data_dir, settings.audit),
            request_state_key=request_state_key,
        )
        memory.start(lambda: getattr(state, "llm", None))
        return state

    def record_audit(
        self, principal: str, action: str, ids: list[str], result: str, *, transport: str = "rest"
    ) -> None:
        """Append one audit record (a call that changed data, or a refused one): who, what, which ids,
        ``ok`` or ``error:<class>`` (:func:`mcp_gemma.security.audit.outcome`). REST routes pass
        ``request.state.principal.name``."""
        if self.audit_log is not None:
            self.audit_log.record(principal, action, ids, result, transport=transport)

    def collection(self, name: str) -> RagService:
        """The knowledge base of collection ``name`` (``default``: :attr:`rag`), opened on first use."""
        return self.collections.get(name)

    async def load_request_state_key(self, *, create: bool) -> str:
        """The shared request-state key, read from Redis when this process has none yet (another
        replica may have made it since), made there first with ``create``; ``""`` when none."""
        if not self.request_state_key:
            self.request_state_key = await self.store.shared_secret("request-state", create=create)
        return self.request_state_key

    async def components(self) -> list[ComponentStatus]:
        """Status of every model and index this process holds."""
        return [
            self.embeddings.status(),
            self.memory.status(),
            *self.collections.status(),
            self.llm.component_status(),
        ]

    async def close(self) -> None:
        """Release everything :meth:`open` acquired."""
        await self.memory.close()
        await self.collections.close()
        await self.llm.unload()
        await self.store.close()


def import_services() -> None:
    """Import the service modules (run in a worker thread: together they take ~1 s to import)."""
    import mcp_gemma.embeddings.service
    import mcp_gemma.llm.factory
    import mcp_gemma.memory.service
    import mcp_gemma.rag.collections
    import mcp_gemma.store.redis  # noqa: F401


class SharedState:
    """One :class:`AppState` per process, however many MCP sessions enter the lifespan.

    Streamable HTTP enters the server lifespan once, but SSE enters it per connection and
    stdio once per run: reference counting keeps one Redis pool and one set of loaded models.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._state: AppState | None = None
        self.failure: McpGemmaError | None = None
        """Why the state last failed to open (``serve`` reports it on exit), else ``None``."""
        self._users = 0
        self._lock = anyio.Lock()

    @property
    def current(self) -> AppState | None:
        """The open state, or ``None`` before the first :meth:`hold` opened it (or after the last)."""
        return self._state

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[AppState]:
        """Use the shared state, opening it for the first user and closing it after the last."""
        async with self._lock:
            if self._state is None:
                try:
                    self._state = await AppState.open(self.settings)
                except McpGemmaError as exc:
                    self.failure = exc
                    raise
                self.failure = None
            self._users += 1
            state = self._state
        try:
            yield state
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0 and self._state is not None:
                        closing, self._state = self._state, None
                        await closing.close()
