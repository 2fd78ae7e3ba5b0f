"""``mcp-gemma export`` / ``import``: a namespace's documents and memories moved to another Redis server
(the standalone ``external_redis``) and compared field by field, on the real Redis and MiniLM."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from mcp_gemma.cli import app
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.memory.consolidation import consolidate
from mcp_gemma.memory.transfer import export_memories
from mcp_gemma.rag.ingest import text_hash
from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.state import AppState
from mcp_gemma.transfer import import_all

pytestmark = pytest.mark.anyio

TIERS = ("working", "short_term", "long_term", "episodic", "semantic")


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AppState]:
    state = await AppState.open(settings)
    try:
        yield state
    finally:
        await state.close()


async def _documents(state: AppState) -> list[dict[str, Any]]:
    listing = await state.rag.list_documents(limit=100)
    out = []
    for summary in listing.documents:
        doc = await state.rag.get_document(summary.id, include_chunks=True)
        record = doc.model_dump()
        record["chunk_list"] = [(c.ordinal, c.start, c.end, c.text) for c in doc.chunk_list or []]
        out.append(record)
    return sorted(out, key=lambda d: d["id"])


async def _memories(state: AppState) -> dict[str, dict[str, Any]]:
    return {r["id"]: r async for r in export_memories(state.memory)}


async def _ttls(state: AppState, memories: dict[str, dict[str, Any]]) -> dict[str, int]:
    client = state.store.client
    keys = state.store.keys
    return {i: int(await client.pttl(keys.memory(m["scope"], i))) for i, m in memories.items()}


def _cli(args: list[str], settings: Settings) -> Any:
    url = settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    common = ["--data-dir", str(settings.data_dir), "--redis-url", url]
    return CliRunner().invoke(app, [*args, *common], env={"MCP_GEMMA_NAMESPACE": settings.namespace})


async def test_export_import_round_trip_loses_nothing(
    settings: Settings, external_redis: str, tmp_path: Path
) -> None:
    target = load_settings(
        data_dir=tmp_path / "target", redis_url=external_redis, namespace=f"t{uuid.uuid4().hex[:12]}"
    )
    dump = tmp_path / "backup.jsonl"
    with anyio.fail_after(300):
        async with opened(settings) as src:
            await src.rag.ingest(
                "Tides are caused by the moon. " * 80, doc_id="tides", metadata={"lang": "en"}
            )
            await src.rag.ingest(
                "Glaciers are slow rivers of ice.", doc_id="ice", metadata={"tags": ["cold"], "n": {"x": 1.5}}
            )
            await src.rag.ingest("Le café est fermé le lundi.")
            for tier in TIERS:
                await src.memory.store(
                    [f"A {tier} memory about the deploy key."],
                    tier=tier,
                    importance=0.7,
                    tags=[tier, "deploy"],
                    session_id="s1",
                    occurred=1_700_000_000.0,
                )
            await src.memory.store(["The team meets on Mondays."], tier="semantic", shared=True)
            await src.memory.store(
                ["The backup runs every night at two.", "The backup runs every night at two!"],
                tier="long_term",
            )
            merged = await consolidate(src.memory, tiers=["long_term"], summarise=False, threshold=0.9)
            assert merged.removed == 1
            docs_before = await _documents(src)
            mems_before = await _memories(src)
            ttl_before = await _ttls(src, mems_before)
            hits_before = (await src.rag.search("what moves the sea", limit=3)).hits

        exported = await anyio.to_thread.run_sync(_cli, ["export", str(dump)], settings)
        assert exported.exit_code == 0, exported.output
        assert "exported 3 documents" in exported.stderr
        again = await anyio.to_thread.run_sync(_cli, ["export", str(dump)], settings)
        assert again.exit_code == 2 and "exists; pass --force" in again.stderr
        assert not dump.with_name("backup.jsonl.partial").exists()
        lines = dump.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["kind"] for line in lines] == ["header"] + ["document"] * 3 + ["memory"] * 7

        for _ in range(2):  # a second import replaces, it does not duplicate
            imported = await anyio.to_thread.run_sync(_cli, ["import", str(dump)], target)
            assert imported.exit_code == 0, imported.output
            report = json.loads(imported.stdout)
            assert (report["documents"], report["memories"], report["problems"]) == (3, 7, [])
            assert report["reused_vectors"] is True

        async with opened(target) as dst:
            assert await _documents(dst) == docs_before
            mems_after = await _memories(dst)
            assert mems_after == mems_before
            assert {m["tier"] for m in mems_after.values()} == set(TIERS)
            kept = [m for m in mems_after.values() if m["provenance"]]
            assert len(kept) == 1 and kept[0]["provenance"][0]["content"].startswith("The backup runs")
            assert {m["scope"] for m in mems_after.values()} == {"default", "shared"}
            ttl_after = await _ttls(dst, mems_after)
            for mid, before in ttl_before.items():
                if before == -1:  # the semantic tier has no TTL
                    assert ttl_after[mid] == -1
                else:
                    assert before - 60_000 < ttl_after[mid] <= before, (mid, before, ttl_after[mid])
            assert list(ttl_after.values()).count(-1) == 2
            hits_after = (await dst.rag.search("what moves the sea", limit=3)).hits
            assert [(h.doc_id, h.ordinal, round(h.score, 5)) for h in hits_after] == [
                (h.doc_id, h.ordinal, round(h.score, 5)) for h in hits_before
            ]
            recalled = await dst.memory.recall("deploy key", k=10, tags=["deploy"], touch=False)
            assert {h.item.tier for h in recalled.hits} == set(TIERS)


async def test_import_reports_bad_lines_and_keeps_the_rest(settings: Settings) -> None:
    header = {"kind": "header", "format": "mcp-gemma-export", "version": 1, "embedding_model": "other"}
    good = {
        "kind": "document",
        "id": "ok",
        "text": "Volcanoes build islands.",
        "metadata": {},
        "content_hash": "",
        "created_at": 1.0,
        "updated_at": 2.0,
        "chunks": [{"ordinal": 0, "start": 0, "end": 24}],
    }
    good["content_hash"] = text_hash(good["text"])
    tampered = {**good, "id": "tampered", "text": "Volcanoes build islands!"}
    bad_span = {**good, "id": "span", "chunks": [{"ordinal": 0, "start": 0, "end": 999}]}
    memory = {"kind": "memory", "id": "zz", "tier": "long_term"}
    expired = {
        "kind": "memory",
        "id": "00000000000000aa",
        "scope": "default",
        "tier": "working",
        "content": "old",
        "importance": 0.5,
        "count": 1,
        "created": 1.0,
        "accessed": 1.0,
        "expires": 2.0,
    }
    lines = [json.dumps(header), json.dumps(good), "{not json", json.dumps(tampered), json.dumps(bad_span)]
    bad_scope = {**expired, "id": "00000000000000bb", "scope": "a:b", "expires": None}
    lines += [json.dumps(memory), json.dumps({"kind": "chunk"}), json.dumps(expired), json.dumps(bad_scope)]
    with anyio.fail_after(120):
        async with opened(settings) as state:
            report = await import_all(state, lines)
            assert (report.documents, report.memories, report.reused_vectors) == (1, 0, False)
            assert [(p.line, p.id, p.error) for p in report.problems] == [
                (
                    3,
                    None,
                    "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
                ),
                (7, None, "unknown record kind 'chunk'; expected document or memory"),
                (4, "tampered", "document 'tampered': content_hash does not match its text (altered?)"),
                (5, "span", "document 'span': chunk 0 is not a span of its text in order"),
                (6, "zz", "'id' must be 16 hex digits"),
                (8, "00000000000000aa", "expired before the import; skipped"),
                (9, "00000000000000bb", "'scope' must be an agent id: 1 to 64 of A-Z a-z 0-9 _ . -"),
            ]
            doc = await state.rag.get_document("ok", include_chunks=True)
            assert (doc.created_at, doc.updated_at, doc.chunks) == (1.0, 2.0, 1)
        for bad, message in [
            ([], "the file is empty"),
            (["{}"], "line 1 is not an mcp-gemma-export header"),
            ([json.dumps({**header, "version": 9})], "export format version 9"),
        ]:
            async with opened(settings) as state:
                with pytest.raises(InvalidInputError, match=message):
                    await import_all(state, bad)
