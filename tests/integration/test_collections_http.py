"""Document collections on a served port: each principal sees only its own knowledge base.

One ``serve --transport http`` process (real embedded Redis, real MiniLM embeddings) with a tokens
file: ``alice`` and ``bob`` limited to the namespaces of their names, ``carol`` read-only on
``alice``, and the admin token. Alice and Bob each ingest a document ``doc1`` into their own
collection; over MCP (the SDK client) and REST (httpx) each sees only its own, every cross-collection
read, write and delete is refused with a message naming the argument, and the admin sees both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import ResourceTemplateReference

from .conftest import BearerTransport, SpawnedServer, server_env

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
CAROL = "carol-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
ALICE_TEXT = "Alice's roadmap: the owl project ships in March."
BOB_TEXT = "Bob's roadmap: the heron project ships in May."


def refusal(principal: str, collection: str, action: str, namespaces: str) -> str:
    return (
        f"principal {principal!r} may not use document collection {collection!r} (the 'collection' "
        f"argument) in {action}; its namespaces: {namespaces}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SpawnedServer, Path]]:
    base = tmp_path_factory.mktemp("collections")
    tokens = base / "tokens.toml"
    tokens.write_text(
        f'[[principals]]\nname = "alice"\ntoken = "{ALICE}"\nnamespaces = ["alice"]\naccess = "write"\n\n'
        f'[[principals]]\nname = "bob"\ntoken = "{BOB}"\nnamespaces = ["bob"]\naccess = "write"\n\n'
        f'[[principals]]\nname = "carol"\ntoken = "{CAROL}"\nnamespaces = ["alice"]\naccess = "read"\n',
        encoding="utf-8",
    )
    tokens.chmod(0o600)
    data = base / "data"
    env = server_env(data, MCP_GEMMA_AUTH_TOKEN=ADMIN, MCP_GEMMA_HTTP__TOKENS_FILE=str(tokens))
    spawned = SpawnedServer("http", data, env=env)
    yield spawned, data
    spawned.stop()


@asynccontextmanager
async def session(server: SpawnedServer, token: str) -> AsyncIterator[Client]:
    with anyio.fail_after(120):
        async with Client(BearerTransport(server.url, token)) as client:
            yield client


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def _ids(client: Client, collection: str) -> list[str]:
    listed = await client.call_tool("list_documents", {"collection": collection})
    assert not listed.is_error, text_of(listed)
    assert listed.structured_content is not None
    return [d["id"] for d in listed.structured_content["documents"]]


async def test_each_principal_sees_only_its_collection_over_mcp(server: tuple[SpawnedServer, Path]) -> None:
    served, data = server
    async with session(served, ALICE) as alice:
        made = await alice.call_tool(
            "ingest_document", {"text": ALICE_TEXT, "id": "doc1", "collection": "alice"}
        )
        assert not made.is_error, text_of(made)
        assert made.structured_content is not None and made.structured_content["status"] == "created"
    async with session(served, BOB) as bob:
        made = await bob.call_tool("ingest_document", {"text": BOB_TEXT, "id": "doc1", "collection": "bob"})
        assert not made.is_error, text_of(made)
        assert made.structured_content is not None and made.structured_content["status"] == "created"

    async with session(served, ALICE) as alice:
        assert await _ids(alice, "alice") == ["doc1"]
        got = await alice.call_tool("get_document", {"id": "doc1", "collection": "alice"})
        assert got.structured_content is not None and got.structured_content["text"] == ALICE_TEXT
        found = await alice.call_tool("hybrid_search", {"query": "project roadmap", "collection": "alice"})
        assert found.structured_content is not None
        assert [(h["doc_id"], h["text"]) for h in found.structured_content["hits"]] == [("doc1", ALICE_TEXT)]
        vector = await alice.call_tool("search_documents", {"query": "heron", "collection": "alice"})
        assert vector.structured_content is not None
        assert {h["text"] for h in vector.structured_content["hits"]} == {ALICE_TEXT}
        resource = await alice.read_resource("doc://doc1?collection=alice")
        assert [getattr(c, "text", None) for c in resource.contents] == [ALICE_TEXT]

        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_documents", {"collection": "bob"}),
            ("get_document", {"id": "doc1", "collection": "bob"}),
            ("search_documents", {"query": "heron", "collection": "bob"}),
            ("hybrid_search", {"query": "heron", "collection": "bob"}),
            ("semantic_search", {"query": "heron", "collection": "bob"}),
            ("research_query", {"query": "heron", "collection": "bob", "use_memory": False, "answer": False}),
            ("ingest_document", {"text": "planted by alice", "id": "doc1", "collection": "bob"}),
            ("batch_ingest", {"documents": [{"text": "planted", "id": "x"}], "collection": "bob"}),
            ("delete_document", {"id": "doc1", "collection": "bob"}),
            ("reason", {"question": "When?", "use_knowledge_base": True, "collection": "bob"}),
            ("run_agent", {"task": "Find Bob's roadmap", "tools": ["search_documents"], "collection": "bob"}),
        ]
        for tool, args in calls:
            refused = await alice.call_tool(tool, args)
            assert refused.is_error, tool
            assert text_of(refused) == refusal("alice", "bob", tool, "alice")
        implicit = await alice.call_tool("list_documents", {})
        assert implicit.is_error
        assert text_of(implicit) == refusal("alice", "default", "list_documents", "alice")
        agent = await alice.call_tool("run_agent", {"task": "Find the roadmap"})
        assert agent.is_error and text_of(agent) == refusal("alice", "default", "run_agent", "alice")
        with pytest.raises(Exception, match="may not use document collection 'bob'"):
            await alice.read_resource("doc://doc1?collection=bob")
        with pytest.raises(Exception, match="may not use document collection 'default'"):
            await alice.read_resource("doc://doc1")
        with pytest.raises(Exception, match="may not use document collection 'bob'"):
            await alice.get_prompt("summarize_document", {"document_id": "doc1", "collection": "bob"})
        for uri, refused_text in (
            ("doc://doc1?collection=bob", "may not use document collection 'bob'"),
            ("memory://semantic?agent_id=bob", "may not use memory namespace"),
        ):
            with pytest.raises(Exception, match=refused_text):  # the 2026 protocol's subscriptions
                async with alice.listen(resource_subscriptions=["doc://doc1?collection=alice", uri]):
                    pass
        async with alice.listen(resource_subscriptions=["doc://doc1?collection=alice"]):
            pass  # its own collection: acknowledged
        prompt = await alice.get_prompt("summarize_document", {"document_id": "doc1", "collection": "alice"})
        assert ALICE_TEXT in getattr(prompt.messages[0].content, "text", "")
        template = ResourceTemplateReference(uri="doc://{id}{?collection}")
        ids = await alice.complete(template, {"name": "id", "value": ""}, {"collection": "bob"})
        assert ids.completion.values == []
        unopened = await alice.complete(template, {"name": "id", "value": ""}, {"collection": "zzz"})
        assert unopened.completion.values == [], "answered without opening collection zzz (see health)"
        own = await alice.complete(template, {"name": "id", "value": ""}, {"collection": "alice"})
        assert own.completion.values == ["doc1"]
        names = await alice.complete(template, {"name": "collection", "value": ""})
        assert names.completion.values == ["alice"]

    async with session(served, CAROL) as carol:
        read = await carol.call_tool("get_document", {"id": "doc1", "collection": "alice"})
        assert read.structured_content is not None and read.structured_content["text"] == ALICE_TEXT
        write = await carol.call_tool("delete_document", {"id": "doc1", "collection": "alice"})
        assert write.is_error
        assert text_of(write) == (
            "principal 'carol' has read-only access: delete_document changes data; "
            "use a token whose access is 'write'"
        )

    async with session(served, BOB) as bob:
        assert await _ids(bob, "bob") == ["doc1"]
        got = await bob.call_tool("get_document", {"id": "doc1", "collection": "bob"})
        assert got.structured_content is not None and got.structured_content["text"] == BOB_TEXT, (
            "nothing planted, nothing deleted by alice"
        )
        refused = await bob.call_tool("get_document", {"id": "doc1", "collection": "alice"})
        assert text_of(refused) == refusal("bob", "alice", "get_document", "bob")

    async with session(served, ADMIN) as admin:
        assert await _ids(admin, "alice") == ["doc1"]
        assert await _ids(admin, "bob") == ["doc1"]
        assert await _ids(admin, "default") == []
        missing = await admin.call_tool("get_document", {"id": "doc1"})
        assert missing.is_error
        assert text_of(missing) == (
            "Error executing tool get_document: no document with id 'doc1'; "
            "call list_documents to see the ids"
        ), "the same id elsewhere is neither found nor named"
        health = await admin.call_tool("health_check", {})
        assert health.structured_content is not None
        kinds = [c["name"] for c in health.structured_content["components"] if c["kind"] == "vector_index"]
        assert kinds == ["knowledge base", "collection alice", "collection bob"]
        bad = await admin.call_tool("list_documents", {"collection": "no/slash"})
        assert bad.is_error and "collection" in text_of(bad)

    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ADMIN}"}, timeout=60) as http:
        scrape = (await http.get(f"http://127.0.0.1:{served.port}/metrics")).text
    sizes = [line for line in scrape.splitlines() if line.startswith("mcp_gemma_index_documents ")]
    assert sizes == ["mcp_gemma_index_documents 2.0"], "one sample, over the three collections"
    loaded = [line for line in scrape.splitlines() if 'kind="vector_index"' in line]
    assert sorted(line.split('component="')[1].split('"')[0] for line in loaded) == [
        "collection alice",
        "collection bob",
        "knowledge base",
    ]

    records = [json.loads(line) for line in (data / "audit.log").read_text(encoding="utf-8").splitlines()]
    mine = [(r["principal"], r["action"], r["ids"], r["result"]) for r in records]
    assert ("alice", "ingest_document", ["doc:doc1", "collection:alice"], "ok") in mine
    assert ("alice", "delete_document", ["doc:doc1", "collection:bob"], "error:AccessDeniedError") in mine
    assert ("alice", "list_documents", ["collection:bob"], "error:AccessDeniedError") in mine


async def test_each_principal_sees_only_its_collection_over_rest(server: tuple[SpawnedServer, Path]) -> None:
    served, data = server
    base = f"http://127.0.0.1:{served.port}"

    def as_(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=60)

    async with as_(ALICE) as alice, as_(BOB) as bob, as_(ADMIN) as admin:
        made = await alice.post(
            "/v1/documents", json={"text": ALICE_TEXT, "id": "rest1", "collection": "alice"}
        )
        assert made.status_code == 200, made.text
        upload = await bob.post(
            "/v1/documents",
            files={"file": ("rest1.txt", BOB_TEXT.encode(), "text/plain")},
            data={"id": "rest1", "collection": "bob"},
        )
        assert upload.status_code == 200, upload.text

        own = await alice.get(
            "/v1/documents", params={"collection": "alice", "filter": '{"doc_id": "rest1"}'}
        )
        assert own.status_code == 200 and [d["id"] for d in own.json()["documents"]] == ["rest1"]
        got = await alice.get("/v1/documents/rest1", params={"collection": "alice"})
        assert got.status_code == 200 and got.json()["text"] == ALICE_TEXT
        found = await alice.post("/v1/search", json={"query": "heron roadmap", "collection": "alice"})
        assert found.status_code == 200, found.text
        assert {h["text"] for h in found.json()["hits"]} == {ALICE_TEXT}, "Bob's heron is not there"

        refused = [
            ("list_documents", "bob", await alice.get("/v1/documents", params={"collection": "bob"})),
            ("get_document", "bob", await alice.get("/v1/documents/rest1", params={"collection": "bob"})),
            (
                "delete_document",
                "bob",
                await alice.delete("/v1/documents/rest1", params={"collection": "bob"}),
            ),
            (
                "ingest_document",
                "bob",
                await alice.post(
                    "/v1/documents", json={"text": "planted", "id": "rest1", "collection": "bob"}
                ),
            ),
            (
                "hybrid_search",
                "bob",
                await alice.post("/v1/search", json={"query": "heron", "collection": "bob"}),
            ),
            (
                "search_documents",
                "bob",
                await alice.post(
                    "/v1/search", json={"query": "heron", "mode": "vector", "collection": "bob"}
                ),
            ),
            (
                "research_query",
                "bob",
                await alice.post(
                    "/v1/research",
                    json={"query": "heron", "use_memory": False, "answer": False, "collection": "bob"},
                ),
            ),
            (
                "reason",
                "bob",
                await alice.post(
                    "/v1/reason", json={"question": "When?", "use_knowledge_base": True, "collection": "bob"}
                ),
            ),
            ("list_documents", "default", await alice.get("/v1/documents")),
        ]
        for action, collection, response in refused:
            assert response.status_code == 403, (action, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"] == refusal("alice", collection, action, "alice")

        theirs = await bob.get("/v1/documents/rest1", params={"collection": "bob"})
        assert theirs.status_code == 200 and theirs.json()["text"] == BOB_TEXT, "nothing planted or deleted"
        both = await admin.get("/v1/documents", params={"collection": "bob", "filter": '{"doc_id": "rest1"}'})
        assert [d["id"] for d in both.json()["documents"]] == ["rest1"]
        bad = await admin.get("/v1/documents", params={"collection": "../etc"})
        assert bad.status_code == 422
        gone = await alice.delete("/v1/documents/rest1", params={"collection": "alice"})
        assert gone.status_code == 200, gone.text
        still = await bob.get("/v1/documents/rest1", params={"collection": "bob"})
        assert still.status_code == 200 and still.json()["text"] == BOB_TEXT, "same id, other collection"
    records = [json.loads(line) for line in (data / "audit.log").read_text(encoding="utf-8").splitlines()]
    rest = [(r["principal"], r["action"], r["ids"], r["result"]) for r in records if r["transport"] == "rest"]
    assert ("bob", "ingest_document", ["doc:rest1", "collection:bob"], "ok") in rest
    assert ("alice", "delete_document", ["doc:rest1", "collection:bob"], "error:AccessDeniedError") in rest
    assert ("alice", "delete_document", ["doc:rest1", "collection:alice"], "ok") in rest
