"""Collections in one process (real Redis, real embeddings): the registry, its bound, the key layout.

The default collection keeps the knowledge base's keys and snapshot exactly as before collections
(nothing stored needs migrating); another collection has keys and documents of its own. The HTTP
side (principals limited to their collections) is ``test_collections_http.py``.
"""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from mcp_gemma.errors import InvalidInputError, QuotaExceededError
from mcp_gemma.rag.collections import RagCollections
from mcp_gemma.rag.service import RagService
from mcp_gemma.rag.snapshot import path_for
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState
from mcp_gemma.store.keys import Keys

from .test_agent import SamplingScript

pytestmark = pytest.mark.anyio


async def test_default_collection_keeps_the_keys_and_data_of_before(settings: Settings) -> None:
    """A document stored by a knowledge base built the way it always was (``RagService(settings,
    store, embeddings)``, the server namespace's keys) is the default collection's after the upgrade,
    through the tools without a collection argument and with ``collection="default"``."""
    with anyio.fail_after(120):
        state = await AppState.open(settings)
        try:
            before = RagService(settings, state.store, state.embeddings)
            await before.ingest("Stored before collections existed.", doc_id="old")
            await before.pipeline.settled()  # written by the write-behind queue
            raw = await state.store.client.hget(Keys(settings.namespace).doc("old"), "text")
            assert raw == b"Stored before collections existed.", "the key name of before"
            await before.close()
        finally:
            await state.close()
        assert path_for(settings.data_dir, settings.namespace).name == f"{settings.namespace}.snapshot"

        async with Client(create_server(settings), raise_exceptions=True) as client:
            plain = await client.call_tool("get_document", {"id": "old"})
            assert plain.structured_content is not None
            assert plain.structured_content["text"] == "Stored before collections existed."
            named = await client.call_tool("get_document", {"id": "old", "collection": "default"})
            assert named.structured_content == plain.structured_content
            made = await client.call_tool(
                "ingest_document", {"text": "A team's own note.", "id": "old", "collection": "team-a"}
            )
            assert made.structured_content is not None and made.structured_content["status"] == "created"
            again = await client.call_tool("get_document", {"id": "old"})
            assert again.structured_content == plain.structured_content, "same id, other collection"

        state = await AppState.open(settings)
        try:
            client_ = state.store.client
            team = Keys(f"{settings.namespace}#team-a")
            assert await client_.hget(team.doc("old"), "text") == b"A team's own note."
            assert await client_.hget(Keys(settings.namespace).doc("old"), "text") == (
                b"Stored before collections existed."
            )
            assert team.tag(0).startswith(f"{{{settings.namespace}#team-a/0.")
            assert (settings.data_dir / "index" / f"{settings.namespace}#team-a.snapshot").is_file(), (
                "each collection saves its own index snapshot at shutdown"
            )
            listed = await state.collection("team-a").list_documents()
            assert [d.id for d in listed.documents] == ["old"]
        finally:
            await state.close()


async def test_the_registry_opens_at_most_max_collections(settings: Settings) -> None:
    bounded = settings.model_copy(update={"rag": settings.rag.model_copy(update={"max_collections": 2})})
    with anyio.fail_after(120):
        state = await AppState.open(bounded)
        try:
            registry: RagCollections = state.collections
            assert registry.names == ["default"] and state.collection("default") is state.rag
            first = state.collection("one")
            assert state.collection("one") is first, "opened once, then reused"
            with pytest.raises(QuotaExceededError) as full:
                state.collection("two")
            assert str(full.value) == (
                "this server has 2 collections open, its rag.max_collections; collection 'two' was not "
                "opened: use one of the open collections or raise rag.max_collections"
            )
            with pytest.raises(InvalidInputError, match="collection 'a/b' is not a valid name"):
                state.collection("a/b")
            assert registry.names == ["default", "one"]
            assert [c.name for c in registry.status()] == ["knowledge base", "collection one"]
        finally:
            await state.close()

        async with Client(create_server(bounded)) as client:
            await client.call_tool("list_documents", {"collection": "one"})
            refused = await client.call_tool("search_documents", {"query": "q", "collection": "three"})
            assert refused.is_error
            text = " ".join(getattr(b, "text", "") for b in refused.content)
            assert "collection 'three' was not opened" in text and "rag.max_collections" in text
            bad = await client.call_tool("list_documents", {"collection": "../x"})
            assert bad.is_error


async def test_run_agent_and_reason_search_the_collection_they_are_given(settings: Settings) -> None:
    """The agent's search_documents tool and reason's grounding read the call's collection, not the
    default one (the brain is the client's model through MCP sampling, scripted)."""
    sampler = SamplingScript(
        [
            json.dumps({"thought": "look it up", "tool": "search_documents", "args": {"query": "door code"}}),
            json.dumps({"thought": "found it", "answer": "blue"}),
            "The door code is blue [chunk:1].",
        ]
    )
    with anyio.fail_after(120):
        async with Client(create_server(settings), sampling_callback=sampler) as client:
            team = await client.call_tool(
                "ingest_document",
                {"text": "The team's door code is blue.", "id": "code", "collection": "team"},
            )
            assert not team.is_error, team.content
            default = await client.call_tool(
                "ingest_document", {"text": "The door code is red.", "id": "code"}
            )
            assert not default.is_error, default.content
            result = await client.call_tool(
                "run_agent",
                {
                    "task": "What is the door code?",
                    "brain": "client",
                    "max_steps": 3,
                    "tools": ["search_documents"],
                    "collection": "team",
                },
            )
            grounded = await client.call_tool(
                "reason",
                {
                    "question": "What is the door code?",
                    "use_knowledge_base": True,
                    "collection": "team",
                    "brain": "client",
                },
            )
    assert not grounded.is_error, grounded.content
    prompt = " ".join(getattr(m.content, "text", "") for m in sampler.seen[2].messages)
    assert "The team's door code is blue." in prompt and "red" not in prompt
    assert not result.is_error, result.content
    report = result.structured_content
    assert report is not None
    assert [s["status"] for s in report["steps"]] == ["ok", "answer"]
    hits = json.loads(report["steps"][0]["observation"])["hits"]
    assert [(h["doc_id"], h["text"]) for h in hits] == [("code", "The team's door code is blue.")]


async def test_a_one_slot_collection_keeps_every_key_in_one_slot(settings: Settings) -> None:
    """``rag.one_slot_collections``: the listed collection's keys all hash to one cluster slot, another
    collection's spread over many; flipping the setting for a collection with data is refused."""
    from redis.crc import key_slot

    from mcp_gemma.errors import ConfigError

    docs = [(f"d{i}", f"Note number {i} about the harbour.") for i in range(12)]
    one = settings.model_copy(
        update={"rag": settings.rag.model_copy(update={"one_slot_collections": ["small"]})}
    )
    with anyio.fail_after(180):
        state = await AppState.open(one)
        try:
            for name in ("small", "wide"):
                for doc_id, text in docs:
                    await state.collection(name).ingest(text, doc_id=doc_id)
                await state.collection(name).pipeline.settled()  # written by the write-behind queue
            client_ = state.store.client

            async def slots(collection: str) -> set[int]:
                pattern = f"{{{settings.namespace}#{collection}*"
                found = {key async for key in client_.scan_iter(match=pattern, count=1000)}
                assert len(found) > len(docs), collection  # documents, chunks, listings, streams …
                return {key_slot(bytes(k)) for k in found}

            assert len(await slots("small")) == 1
            assert len(await slots("wide")) > 5
            hits = await state.collection("small").hybrid_search("harbour note number 7", limit=1)
            assert hits.hits[0].doc_id == "d7"
        finally:
            await state.close()

        # The same data, the setting flipped both ways: refused, naming the setting, nothing lost.
        flipped = settings.model_copy(
            update={"rag": settings.rag.model_copy(update={"one_slot_collections": ["wide"]})}
        )
        state = await AppState.open(flipped)
        try:
            for name, stored in (("small", "one"), ("wide", "spread")):
                with pytest.raises(ConfigError, match=r"rag\.one_slot_collections") as refused:
                    await state.collection(name).list_documents()
                assert f"slot mode {stored!r}" in str(refused.value)
                with pytest.raises(ConfigError, match=r"rag\.one_slot_collections"):
                    await state.collection(name).ingest("More.", doc_id="d99")
        finally:
            await state.close()

        state = await AppState.open(one)
        try:
            listed = await state.collection("small").list_documents(limit=100)
            assert sorted(d.id for d in listed.documents) == sorted(d for d, _ in docs)
        finally:
            await state.close()


def test_one_slot_collections_refuses_default_and_bad_names() -> None:
    from mcp_gemma.rag.config import RagSettings

    for bad in ("default", "two words", ""):
        with pytest.raises(ValueError, match=r"rag\.one_slot_collections"):
            RagSettings(one_slot_collections=[bad])
    assert RagSettings(one_slot_collections=["team-a"]).one_slot_collections == ["team-a"]
