"""The knowledge-base tools through a real MCP client.

The main flow runs on every transport (in-memory, stdio, SSE, Streamable HTTP); restarts, two
servers over one Redis, files and bad input run in-memory against the same real Redis and MiniLM.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

from .conftest import Connect

pytestmark = pytest.mark.anyio

RAG_TOOLS = {
    "ingest_document",
    "batch_ingest",
    "search_documents",
    "semantic_search",
    "hybrid_search",
    "research_query",
    "list_documents",
    "get_document",
    "delete_document",
}
PHOTOSYNTHESIS = (
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide into "
    "glucose and oxygen. It takes place in the chloroplasts, where chlorophyll absorbs mostly red and blue "
    "light. The light-dependent reactions split water and make ATP and NADPH; the Calvin cycle then fixes "
    "carbon dioxide into sugar. "
)
VOLCANO = (
    "A volcano is an opening in the crust of a planet through which molten rock, ash and gases escape. "
    "Stratovolcanoes build steep cones from layers of lava and tephra, while shield volcanoes have gentle "
    "slopes made by fluid basaltic lava flows. "
)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def data(result: Any) -> Any:
    assert result.is_error is False, result.content[0].text
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error is True, result.structured_content
    return str(result.content[0].text)


@asynccontextmanager
async def in_memory(settings: Settings) -> AsyncIterator[Client]:
    async with Client(create_server(settings)) as client:
        yield client


async def namespace_snapshot(settings: Settings) -> dict[str, Any]:
    """Every key of the test's namespace with its type and length: 'store unchanged' compares these."""
    assert settings.redis_url is not None
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        snap: dict[str, Any] = {}
        async for key in client.scan_iter(match=f"{{{settings.namespace}[}}/]*"):
            kind = (await client.type(key)).decode()
            size = {
                "hash": client.hlen,
                "stream": client.xlen,
                "zset": client.zcard,
                "string": client.strlen,
            }.get(kind)
            snap[key.decode()] = (kind, await size(key) if size else None)  # type: ignore[operator]
        return snap
    finally:
        await client.aclose()


async def test_ingest_search_get_delete(connect: Connect) -> None:
    doc_id = f"photo-{uid()}"
    run = uid()
    marker = f"zq{uid()}"
    text = PHOTOSYNTHESIS * 4 + f"The lab notebook code is {marker}."
    with anyio.fail_after(240):
        async with connect() as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) >= RAG_TOOLS
            assert tools["search_documents"].annotations is not None
            assert tools["search_documents"].annotations.read_only_hint is True
            assert tools["delete_document"].annotations.destructive_hint is True  # type: ignore[union-attr]

            report = data(
                await client.call_tool(
                    "ingest_document", {"text": text, "id": doc_id, "metadata": {"run": run, "year": 2024}}
                )
            )
            assert report["id"] == doc_id
            assert report["status"] == "created"
            assert report["chunks"] >= 2
            other = data(
                await client.call_tool("ingest_document", {"text": VOLCANO, "metadata": {"run": run}})
            )
            again = data(
                await client.call_tool(
                    "ingest_document", {"text": text, "id": doc_id, "metadata": {"run": run, "year": 2024}}
                )
            )
            assert again["status"] == "unchanged"

            found = data(
                await client.call_tool(
                    "search_documents", {"query": "how do plants make sugar from light?", "limit": 3}
                )
            )
            assert found["hits"][0]["doc_id"] == doc_id
            top = found["hits"][0]
            assert text[top["start"] : top["end"]] == top["text"]
            assert -1.0 <= top["score"] <= 1.0

            filtered = data(
                await client.call_tool(
                    "search_documents",
                    {"query": "molten rock", "limit": 5, "filter": {"run": run, "year": {"$gte": 2020}}},
                )
            )
            assert {h["doc_id"] for h in filtered["hits"]} == {doc_id}

            keyword = data(await client.call_tool("hybrid_search", {"query": marker, "limit": 3}))
            assert keyword["hits"][0]["doc_id"] == doc_id
            assert marker in keyword["hits"][0]["text"]

            passages = data(
                await client.call_tool(
                    "semantic_search",
                    {"query": "chlorophyll absorbs light", "limit": 2, "filter": {"run": run}},
                )
            )
            assert passages["passages"][0]["doc_id"] == doc_id
            assert len(passages["passages"][0]["chunk_ids"]) >= 2  # neighbours stitched in

            doc = data(await client.call_tool("get_document", {"id": doc_id, "include_chunks": True}))
            assert doc["text"] == text
            assert doc["metadata"] == {"run": run, "year": 2024}
            assert [c["ordinal"] for c in doc["chunk_list"]] == list(range(report["chunks"]))
            resource = await client.read_resource(f"doc://{doc_id}")
            assert resource.contents[0].text == text  # type: ignore[union-attr]

            listing = data(await client.call_tool("list_documents", {"filter": {"run": run}}))
            assert {d["id"] for d in listing["documents"]} == {doc_id, other["id"]}

            deleted = data(await client.call_tool("delete_document", {"id": doc_id}))
            assert deleted == {"id": doc_id, "deleted": True, "chunks_removed": report["chunks"]}
            after = data(
                await client.call_tool(
                    "search_documents", {"query": "plants make sugar", "limit": 5, "filter": {"run": run}}
                )
            )
            assert doc_id not in {h["doc_id"] for h in after["hits"]}
            assert doc_id not in {
                h["doc_id"]
                for h in data(await client.call_tool("hybrid_search", {"query": marker, "limit": 5}))["hits"]
            }
            assert "no document with id" in error_text(await client.call_tool("get_document", {"id": doc_id}))
            data(await client.call_tool("delete_document", {"id": other["id"]}))


async def test_restart_rebuilds_from_redis(settings: Settings) -> None:
    with anyio.fail_after(240):
        async with in_memory(settings) as first:
            data(await first.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "id": "plants"}))
            data(await first.call_tool("ingest_document", {"text": VOLCANO, "id": "volcano"}))
        async with in_memory(settings) as second:
            hits = data(await second.call_tool("search_documents", {"query": "lava and ash", "limit": 1}))[
                "hits"
            ]
            assert hits[0]["doc_id"] == "volcano"
            data(await second.call_tool("delete_document", {"id": "volcano"}))
        async with in_memory(settings) as third:
            hits = data(await third.call_tool("search_documents", {"query": "lava and ash", "limit": 5}))[
                "hits"
            ]
            assert {h["doc_id"] for h in hits} == {"plants"}
            listing = data(await third.call_tool("list_documents", {}))
            assert [d["id"] for d in listing["documents"]] == ["plants"]


async def test_two_servers_over_one_redis_agree(settings: Settings) -> None:
    with anyio.fail_after(240):
        async with in_memory(settings) as a, in_memory(settings) as b:
            # b builds its index before a writes, so it must learn of the change from the stream
            assert data(await b.call_tool("list_documents", {}))["total"] == 0
            data(
                await a.call_tool("ingest_document", {"text": VOLCANO, "id": "shared", "metadata": {"v": 1}})
            )
            hits = data(
                await b.call_tool("search_documents", {"query": "eruption of molten rock", "limit": 1})
            )
            assert hits["hits"][0]["doc_id"] == "shared"
            assert hits["hits"][0]["metadata"] == {"v": 1}

            data(
                await b.call_tool(
                    "ingest_document", {"text": PHOTOSYNTHESIS, "id": "shared", "metadata": {"v": 2}}
                )
            )
            seen = data(await a.call_tool("hybrid_search", {"query": "chloroplasts", "limit": 5}))["hits"]
            assert {h["doc_id"] for h in seen} == {"shared"}
            assert all(h["text"] in PHOTOSYNTHESIS for h in seen)  # the old chunks are gone
            stale = data(await a.call_tool("hybrid_search", {"query": "stratovolcanoes", "limit": 5}))["hits"]
            assert all(h["text"] in PHOTOSYNTHESIS for h in stale)

            data(await a.call_tool("delete_document", {"id": "shared"}))
            assert data(await b.call_tool("list_documents", {}))["total"] == 0
            assert not data(await b.call_tool("search_documents", {"query": "plants", "limit": 5}))["hits"]


def _settings_with_root(settings: Settings, root: Path, **rag: Any) -> Settings:
    return load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
        namespace=settings.namespace,
        allowed_roots=[str(root)],
        rag=rag or None,
    )


async def test_batch_ingest_files_with_progress(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "kb"
    (root / "sub").mkdir(parents=True)
    (root / "plants.md").write_text("# Plants\n\n" + PHOTOSYNTHESIS, encoding="utf-8")
    (root / "sub" / "volcano.html").write_text(
        f"<html><head><title>Volcanoes</title><style>p{{}}</style></head><body><p>{VOLCANO}</p>"
        "<script>var x = 1;</script></body></html>",
        encoding="utf-8",
    )
    (root / "facts.jsonl").write_text(
        '{"id": "fact-1", "text": "Honey never spoils if sealed.", "topic": "food"}\n'
        '{"text": "Octopuses have three hearts.", "topic": "animals"}\n',
        encoding="utf-8",
    )
    (root / "bad.txt").write_bytes(b"caf\xe9 au lait\n")
    (root / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (root / "ignored.bin").write_bytes(b"\x00")
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret", encoding="utf-8")
    (root / "link.txt").symlink_to(outside)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(240):
        async with in_memory(_settings_with_root(settings, root)) as client:
            report = data(
                await client.call_tool(
                    "batch_ingest",
                    {"paths": ["."], "metadata": {"batch": "one"}},
                    progress_callback=on_progress,
                )
            )
            ids = {r["id"] for r in report["ingested"]}
            assert ids >= {"file:plants.md", "file:sub/volcano.html", "fact-1", "file:bad.txt"}
            assert report["created"] == 5
            failed = {Path(f["source"]).name: (f["reason"], f["error"]) for f in report["failed"]}
            assert set(failed) == {"blob.txt", "ignored.bin", "link.txt"}
            assert failed["blob.txt"][0] == failed["ignored.bin"][0] == "binary"
            assert "NUL bytes" in failed["blob.txt"][1]
            assert failed["link.txt"][0] == "outside_roots"
            assert "outside the allowed roots" in failed["link.txt"][1]
            assert report["skipped"] == {"binary": 2, "outside_roots": 1}
            latin = data(await client.call_tool("get_document", {"id": "file:bad.txt"}))
            assert latin["text"] == "caf\u00e9 au lait\n"
            assert latin["metadata"]["encoding"] == "latin-1"
            assert progress and progress[-1][0] == progress[-1][1]
            assert any(m and "plants.md" in m for *_, m in progress)

            html = data(await client.call_tool("get_document", {"id": "file:sub/volcano.html"}))
            assert html["metadata"] == {
                "source": "sub/volcano.html",
                "format": "html",
                "title": "Volcanoes",
                "batch": "one",
            }
            assert "var x" not in html["text"] and "Stratovolcanoes" in html["text"]
            fact = data(await client.call_tool("get_document", {"id": "fact-1"}))
            assert fact["metadata"]["topic"] == "food"
            resource = await client.read_resource("doc://file%3Asub%2Fvolcano.html")
            assert "shield volcanoes" in resource.contents[0].text  # type: ignore[union-attr]

            again = data(
                await client.call_tool("batch_ingest", {"paths": ["plants.md"], "metadata": {"batch": "one"}})
            )
            assert again["unchanged"] == 1

            inline = data(
                await client.call_tool(
                    "batch_ingest",
                    {
                        "documents": [
                            {
                                "text": "Mercury is the smallest planet.",
                                "id": "mercury",
                                "metadata": {"kind": "planet"},
                            },
                            {"text": "   "},
                            {
                                "text": "Jupiter is the largest planet.",
                                "id": "bad\x01id",
                            },
                            {"text": "Saturn has rings.", "metadata": {"kind": "planet"}},
                        ]
                    },
                )
            )
            assert inline["created"] == 2
            assert [f["source"] for f in inline["failed"]] == ["documents[1]", "documents[2]"]
            assert "control characters" in inline["failed"][1]["error"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../secret.txt", "outside the allowed roots"),
        ("{outside}", "outside the allowed roots"),
        ("link.txt", "outside the allowed roots"),
        ("sub/../../secret.txt", "outside the allowed roots"),
        ("bad.txt", "starts with a UTF-16 byte-order mark but is not valid"),
        ("blob.bin.txt", "contains NUL bytes"),
        ("missing.txt", "does not exist"),
        ("empty.md", "is empty"),
    ],
)
async def test_bad_paths_are_refused(settings: Settings, tmp_path: Path, path: str, expected: str) -> None:
    root = tmp_path / "kb"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret", encoding="utf-8")
    (root / "link.txt").symlink_to(outside)
    (root / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    (root / "blob.bin.txt").write_bytes(os.urandom(64) + b"\x00")
    (root / "empty.md").write_text("  \n", encoding="utf-8")
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, root)) as client:
            before = await namespace_snapshot(settings)
            message = error_text(
                await client.call_tool("batch_ingest", {"paths": [path.format(outside=outside)]})
            )
            assert expected in message
            assert await namespace_snapshot(settings) == before


async def test_file_ingest_is_off_without_roots(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    async with in_memory(settings) as client:
        assert "no allowed_roots" in error_text(
            await client.call_tool("batch_ingest", {"paths": [str(tmp_path / "a.txt")]})
        )


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("ingest_document", {"text": ""}, "at least 1 character"),
        ("ingest_document", {"text": " \n\t "}, "text is empty"),
        ("ingest_document", {"text": "x" * (50 * 1024 * 1024)}, "the limit is 10,485,760"),
        ("ingest_document", {"text": "ok", "id": "bad\nid"}, "control characters"),
        ("batch_ingest", {}, "either 'documents'"),
        ("get_document", {"id": "nope"}, "no document with id 'nope'"),
        ("delete_document", {"id": "nope"}, "no document with id 'nope'"),
        ("search_documents", {"query": "plants", "limit": 0}, "greater than or equal to 1"),
        ("search_documents", {"query": "plants", "limit": -3}, "greater than or equal to 1"),
        ("search_documents", {"query": "plants", "limit": 10**9}, "less than or equal to"),
        ("search_documents", {"query": "plants", "limit": 5_000}, "limit must be between 1 and 100"),
        ("search_documents", {"query": "   "}, "query is empty"),
        (
            "search_documents",
            {"query": "plants", "filter": {"colour": "red"}},
            "no document has a metadata field",
        ),
        ("hybrid_search", {"query": "plants", "filter": {"kind": {"$near": 1}}}, "unknown operator"),
        ("hybrid_search", {"query": "plants", "filter": {"year": {"$gte": "x"}}}, "finite number"),
        ("semantic_search", {"query": "plants", "filter": {"kind": {"$in": []}}}, "non-empty list"),
        ("list_documents", {"limit": 0}, "greater than or equal to 1"),
        (
            "research_query",
            {"query": "plants", "urls": ["https://example.org/"]},
            "not on the URL allow-list",
        ),
    ],
)
async def test_bad_input_is_a_clear_error_and_changes_nothing(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    with anyio.fail_after(180):
        async with in_memory(settings) as client:
            data(
                await client.call_tool(
                    "ingest_document",
                    {"text": PHOTOSYNTHESIS, "id": "plants", "metadata": {"kind": "biology", "year": 2020}},
                )
            )
            data(await client.call_tool("list_documents", {}))  # the ingest is written once a read ran
            before = await namespace_snapshot(settings)
            message = error_text(await client.call_tool(tool, args))
            assert expected in message
            assert "Traceback" not in message
            assert await namespace_snapshot(settings) == before


async def test_research_query_evidence_only(settings: Settings) -> None:
    async with in_memory(settings) as client:
        data(await client.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "id": "plants"}))
        data(await client.call_tool("ingest_document", {"text": VOLCANO, "id": "volcano"}))
        report = data(
            await client.call_tool(
                "research_query", {"query": "Where does photosynthesis happen?", "answer": False}
            )
        )
        assert report["answer"] is None
        assert "no answer requested" in report["answer_status"]
        assert report["evidence"][0]["kind"] == "document"
        assert report["evidence"][0]["source"] == "plants"
        assert report["evidence"][0]["ref"].startswith("chunk:")
        scores = [e["score"] for e in report["evidence"]]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_research_query_answers_with_gemma(settings: Settings) -> None:
    with anyio.fail_after(1100):
        async with in_memory(settings) as client:
            data(await client.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "id": "plants"}))
            report = data(
                await client.call_tool("research_query", {"query": "Where does photosynthesis happen?"})
            )
    # The packaged 270M base model writes an answer without a valid citation here, so the best
    # evidence sentences come back instead, each with its reference (greedy: the same every run).
    chunk = report["evidence"][0]["ref"]
    assert report["answer_kind"] == "extractive", report["answer_status"]
    assert report["answer_status"].startswith("the model's answer cited no evidence")
    assert report["cited"] == [chunk]
    assert report["answer"] == (
        "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide "
        f"into glucose and oxygen. [{chunk}] It takes place in the chloroplasts, where chlorophyll absorbs "
        f"mostly red and blue light. [{chunk}]"
    )


async def test_ingest_document_reports_embedding_progress(settings: Settings) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        events.append((done, total, message))

    with anyio.fail_after(240):
        async with in_memory(settings) as client:
            report = data(
                await client.call_tool(
                    "ingest_document",
                    {"text": PHOTOSYNTHESIS * 40, "id": "long"},
                    progress_callback=on_progress,
                )
            )
    # repeated text is embedded once (content-hash cache), so progress counts distinct chunks
    assert events and events[-1][0] == events[-1][1] and events[-1][2] == "embedding chunks"
    assert report["chunks"] >= events[-1][0] >= 2


async def test_research_query_reads_memory_without_changing_it(settings: Settings) -> None:
    """research_query is read-only: recalled memories keep their access count and tier (an important
    short_term memory would be promoted by a real recall), and unrelated memories stay out."""
    async with in_memory(settings) as client:
        data(await client.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "id": "plants"}))
        related = data(
            await client.call_tool(
                "store_memory",
                {"content": "Photosynthesis in plants happens in the chloroplasts", "importance": 0.9},
            )
        )["ids"][0]
        unrelated = data(
            await client.call_tool("store_memory", {"content": "Parking permit renewal is due on Friday"})
        )["ids"][0]
        report = data(
            await client.call_tool(
                "research_query", {"query": "Where does photosynthesis happen?", "answer": False}
            )
        )
        refs = [e["ref"] for e in report["evidence"]]
        assert f"memory:{related}" in refs
        assert f"memory:{unrelated}" not in refs
        assert any("similarity below 0.3" in note for note in report["notes"])
        for memory_id in (related, unrelated):
            resource = await client.read_resource(f"memory://short_term/{memory_id}")
            item = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert (item["tier"], item["access_count"]) == ("short_term", 1)
