"""Concurrent store_memory calls share embedding forward passes, behind a bounded queue (issue 17)."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
import numpy as np
import pytest
from mcp import Client

from mcp_gemma.embeddings.base import Vectors
from mcp_gemma.embeddings.config import EmbeddingSettings
from mcp_gemma.embeddings.service import EmbeddingService
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState, SharedState
from tests.memory.conftest import MakeSettings, contents, fails, ok

pytestmark = pytest.mark.anyio

TOPICS = [
    "the deploy key rotates every ninety days",
    "Alice prefers tea over coffee in the morning",
    "the staging cluster runs in eu-west-1",
    "backups are verified each Sunday night",
    "the billing service retries failed charges three times with exponential backoff",
    "Bob is allergic to peanuts",
    "release notes go out on the first Monday of the month",
    "the search index is rebuilt when the schema version changes",
]
CONTENTS = [f"{topic} (note {i})" for i in range(3) for topic in TOPICS]


@asynccontextmanager
async def create_server_client(settings: Settings, shared: SharedState) -> AsyncIterator[Client]:
    """An in-memory client session on a server that uses ``shared``'s state."""
    async with Client(create_server(settings, shared), raise_exceptions=True) as client:
        yield client


class Gate:
    """Holds the embedder's forward passes until released; records the texts of each pass."""

    def __init__(self, state: AppState) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.passes: list[list[str]] = []
        batcher = state.embeddings.batcher
        real = batcher._run

        def gated(texts: list[str]) -> Vectors:
            self.passes.append(list(texts))
            self.entered.set()
            self.release.wait(timeout=60)
            return real(texts)

        batcher._run = gated  # type: ignore[method-assign]


async def pending_reaches(service: EmbeddingService, count: int) -> None:
    """Until ``count`` texts are admitted to the embedding queue: polled (the queue has no event to
    wait on), within fail_after."""
    with anyio.fail_after(30):
        while service.batcher.pending != count:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_concurrent_store_memory_calls_share_forward_passes_with_unbatched_vectors(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    shared = SharedState(settings)
    with anyio.fail_after(120):
        async with shared.hold() as state, create_server_client(settings, shared) as client:
            await ok(client, "store_memory", content="warm-up: the model loads here")
            gate = Gate(state)
            results: dict[str, dict[str, object]] = {}

            async def store(text: str) -> None:
                results[text] = await ok(client, "store_memory", content=text, tier="semantic")

            async with anyio.create_task_group() as tg:
                for text in CONTENTS:
                    tg.start_soon(store, text)
                # the first pass holds the model while every other call queues behind it
                await anyio.to_thread.run_sync(gate.entered.wait, 30)
                await pending_reaches(state.embeddings, len(CONTENTS))
                gate.release.set()

            assert len(results) == len(CONTENTS)
            embedded = [t for batch in gate.passes for t in batch]
            assert sorted(embedded) == sorted(CONTENTS)  # each text embedded once
            assert len(gate.passes) < len(CONTENTS)  # coalesced: fewer passes than calls
            assert max(len(b) for b in gate.passes) <= settings.embedding.batch_size

            # the vectors stored are those of one-by-one embedding
            alone = EmbeddingService(EmbeddingSettings(cache_size=0))
            batched = await state.embeddings.embed(CONTENTS)  # from the cache the batched passes filled
            for text, row in zip(CONTENTS, batched, strict=True):
                single = await alone.embed_one(text)
                np.testing.assert_allclose(row, single, atol=1e-5)
            assert await contents(client, CONTENTS[4], limit=1) == [CONTENTS[4]]


async def test_a_full_embedding_queue_refuses_with_server_busy(make_settings: MakeSettings) -> None:
    settings = make_settings()
    settings.embedding.max_queue_texts = 2
    settings.embedding.batch_wait_ms = 0
    shared = SharedState(settings)
    with anyio.fail_after(120):
        async with shared.hold() as state, create_server_client(settings, shared) as client:
            await ok(client, "store_memory", content="warm-up: the model loads here")
            gate = Gate(state)
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(ok, client, "store_memory", content="first fact in the pass"))
                await anyio.to_thread.run_sync(gate.entered.wait, 30)
                tg.start_soon(partial(ok, client, "store_memory", content="second fact, queued"))
                await pending_reaches(state.embeddings, 2)
                message = await fails(client, "store_memory", content="third fact, refused")
                gate.release.set()
            assert re.search(r"server busy: 2 texts are waiting to be embedded; retry after \d+ s$", message)
            assert "third fact, refused" not in await contents(client, "third fact, refused", limit=5)
            # the queue drained: the same call goes through now
            await ok(client, "store_memory", content="third fact, refused")


async def test_a_cancelled_waiting_call_leaves_the_queue_without_being_embedded() -> None:
    service = EmbeddingService(EmbeddingSettings(batch_wait_ms=0))
    await service.embed_one("warm-up")
    entered, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []
    real = service.batcher._run

    def gated(texts: list[str]) -> Vectors:
        seen.append(list(texts))
        entered.set()
        release.wait(timeout=60)
        return real(texts)

    service.batcher._run = gated  # type: ignore[method-assign]
    cancelled = anyio.CancelScope()

    async def cancelled_while_queued() -> None:
        with cancelled:
            await service.embed_one("cancelled while queued")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.embed_one, "in the running pass")
            await anyio.to_thread.run_sync(entered.wait, 30)
            tg.start_soon(cancelled_while_queued)
            await pending_reaches(service, 2)
            tg.start_soon(service.embed_one, "queued after it")
            await pending_reaches(service, 3)
            cancelled.cancel()
            await pending_reaches(service, 2)  # its text left the queue at once
            release.set()
    assert seen == [["in the running pass"], ["queued after it"]]
    assert service.batcher.pending == 0
    assert cancelled.cancelled_caught
