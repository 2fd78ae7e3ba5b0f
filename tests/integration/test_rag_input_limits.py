"""Input that used to poison or abort the knowledge base is refused or skipped clearly (issue 17).

Deep metadata, a file nested past Python's parser, a pathological glob and symlinks out of the
allowed roots, each through a real MCP client against real Redis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gemma.settings import Settings

from .test_rag_tools import (
    PHOTOSYNTHESIS,
    _settings_with_root,
    data,
    error_text,
    in_memory,
    namespace_snapshot,
)

pytestmark = pytest.mark.anyio


def nested(levels: int) -> dict[str, Any]:
    """Metadata whose objects nest ``levels`` deep (``{"k": 1}`` is one level)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = {"k": value}
    return {"k": value}


async def test_deep_metadata_is_refused_and_listing_keeps_working(settings: Settings) -> None:
    with anyio.fail_after(180):
        async with in_memory(settings) as client:
            data(await client.call_tool("ingest_document", {"id": "good", "text": PHOTOSYNTHESIS}))
            deepest = data(
                await client.call_tool(
                    "ingest_document", {"id": "deep-ok", "text": PHOTOSYNTHESIS, "metadata": nested(16)}
                )
            )
            assert deepest["status"] == "created"
            data(await client.call_tool("list_documents", {}))  # the ingests are written once a read ran
            before = await namespace_snapshot(settings)
            for levels in (17, 196):
                message = error_text(
                    await client.call_tool(
                        "ingest_document",
                        {"id": "poison", "text": PHOTOSYNTHESIS, "metadata": nested(levels)},
                    )
                )
                assert "more than 16 levels deep" in message and "rag.max_metadata_depth" in message
            lists = nested(20)["k"]
            message = error_text(
                await client.call_tool(
                    "ingest_document",
                    {"id": "poison", "text": PHOTOSYNTHESIS, "metadata": {"a": [[[[lists]]]]}},
                )
            )
            assert "rag.max_metadata_depth" in message
            message = error_text(
                await client.call_tool(
                    "ingest_document", {"id": "poison", "text": PHOTOSYNTHESIS, "metadata": {"k" * 300: 1}}
                )
            )
            assert "300 characters; the limit is 256" in message
            assert await namespace_snapshot(settings) == before  # refused, and nothing stored was lost
            listed = data(await client.call_tool("list_documents", {}))
            assert sorted(d["id"] for d in listed["documents"]) == ["deep-ok", "good"]
            hits = data(
                await client.call_tool("search_documents", {"query": "chlorophyll sunlight", "limit": 5})
            )
            assert {h["doc_id"] for h in hits["hits"]} == {"deep-ok", "good"}


async def test_metadata_depth_limit_is_a_setting(settings: Settings, tmp_path: Path) -> None:
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, tmp_path, max_metadata_depth=3)) as client:
            data(await client.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "metadata": nested(3)}))
            message = error_text(
                await client.call_tool("ingest_document", {"text": PHOTOSYNTHESIS, "metadata": nested(4)})
            )
            assert "more than 3 levels deep" in message


async def test_documents_stored_deeper_than_the_limit_are_shown_clipped_and_kept(
    settings: Settings, tmp_path: Path
) -> None:
    """A document stored before the limit (here: under a looser one) no longer poisons listings."""
    deep = nested(40)
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, tmp_path, max_metadata_depth=64)) as loose:
            data(
                await loose.call_tool(
                    "ingest_document", {"id": "old", "text": PHOTOSYNTHESIS, "metadata": deep}
                )
            )
        async with in_memory(settings) as client:
            listed = data(await client.call_tool("list_documents", {}))["documents"][0]["metadata"]
            hit = data(await client.call_tool("search_documents", {"query": "chlorophyll", "limit": 1}))[
                "hits"
            ][0]
            got = data(await client.call_tool("get_document", {"id": "old"}))["metadata"]
            for shown in (listed, hit["metadata"], got):
                value: Any = shown
                for _ in range(15):
                    value = value["k"]
                assert isinstance(value["k"], str) and "nested deeper than 16 levels" in value["k"]
        async with in_memory(_settings_with_root(settings, tmp_path, max_metadata_depth=64)) as loose:
            assert (
                data(await loose.call_tool("get_document", {"id": "old"}))["metadata"] == deep
            )  # kept whole


async def test_batch_ingest_skips_bad_json_files_and_keeps_the_good_ones(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "good.md").write_text(PHOTOSYNTHESIS, encoding="utf-8")
    # Past Python's recursion limit: json.loads itself gives up.
    (root / "abyss.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    # Parses, but its metadata nests ~950 levels: refused by the depth limit, not by the serializer.
    levels = 950
    deep = '{"text": "deep metadata", "metadata": ' + '{"k": ' * levels + "1" + "}" * levels + "}"
    (root / "deep.json").write_text(deep, encoding="utf-8")
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, root)) as client:
            report = data(await client.call_tool("batch_ingest", {"paths": ["."]}))
            assert [r["id"] for r in report["ingested"]] == ["file:good.md"]
            failed = {f["source"]: f["error"] for f in report["failed"]}
            assert set(failed) == {str(root / "abyss.json"), "deep.json"}
            assert "nests JSON arrays and objects too deeply" in failed[str(root / "abyss.json")]
            assert "rag.max_metadata_depth" in failed["deep.json"]
            listed = data(await client.call_tool("list_documents", {}))
            assert [d["id"] for d in listed["documents"]] == ["file:good.md"]


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("a**b", "'**' can only be a whole path component"),
        ("**/**/**/**/*.md", "too complex"),
        ("*?" * 9, "too complex"),
        ("x" * 300, "String should have at most"),
        ("../*", "'..'"),
        ("/etc/*", "relative"),
    ],
)
async def test_pathological_glob_is_a_clear_error(
    settings: Settings, tmp_path: Path, glob: str, expected: str
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "good.md").write_text(PHOTOSYNTHESIS, encoding="utf-8")
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, root)) as client:
            message = error_text(await client.call_tool("batch_ingest", {"paths": ["."], "glob": glob}))
            assert expected in message and "Traceback" not in message


async def test_globs_follow_no_link_out_of_the_roots(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    (outside / "private" / "passwords.md").write_text("hunter2 " * 20, encoding="utf-8")
    root = tmp_path / "kb"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "plants.md").write_text(PHOTOSYNTHESIS, encoding="utf-8")
    (root / "escape").symlink_to(outside)  # a folder link out of the root
    (root / "alias").symlink_to(root / "docs")  # a folder link that stays inside
    (root / "loop").symlink_to(root)  # a cycle
    with anyio.fail_after(180):
        async with in_memory(_settings_with_root(settings, root)) as client:
            for glob in ("*/*", "*/*/*.md", "**/*.md", "escape/**/*"):
                result = await client.call_tool("batch_ingest", {"paths": ["."], "glob": glob})
                text = json.dumps(result.structured_content) if not result.is_error else error_text(result)
                assert "passwords" not in text and "private" not in text and str(outside) not in text, (
                    glob,
                    text,
                )
                assert "hunter2" not in text
            report = data(await client.call_tool("batch_ingest", {"paths": ["."], "glob": "**/*.md"}))
            assert [r["id"] for r in report["ingested"]] == ["file:docs/plants.md"]
            assert any(
                f["source"] == str(root / "escape")
                and "leads outside the allowed roots; not followed" in f["error"]
                for f in report["failed"]
            )
            message = error_text(await client.call_tool("batch_ingest", {"paths": ["escape/private"]}))
            assert "outside the allowed roots" in message and str(outside) not in message


@pytest.mark.parametrize(
    ("doc_id", "named"),
    [
        ("doc\u200b1", "U+200B (ZERO WIDTH SPACE) at position 3"),
        ("doc\u200d1", "U+200D (ZERO WIDTH JOINER)"),
        ("\u202eexe.txt", "U+202E (RIGHT-TO-LEFT OVERRIDE) at position 0"),
        ("doc\u2066x\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("soft\u00adhyphen", "U+00AD (SOFT HYPHEN)"),
        ("\ufeffbom", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
        ("line\u2028break", "U+2028 (LINE SEPARATOR)"),
    ],
)
async def test_invisible_characters_in_document_ids_are_refused(
    settings: Settings, doc_id: str, named: str
) -> None:
    with anyio.fail_after(180):
        async with in_memory(settings) as client:
            before = await namespace_snapshot(settings)
            message = error_text(
                await client.call_tool("ingest_document", {"id": doc_id, "text": PHOTOSYNTHESIS})
            )
            assert named in message and "visible characters" in message
            assert await namespace_snapshot(settings) == before


async def test_document_ids_are_nfc_normalised(settings: Settings) -> None:
    decomposed, composed = "cafe\u0301-notes", "caf\u00e9-notes"
    with anyio.fail_after(180):
        async with in_memory(settings) as client:
            first = data(
                await client.call_tool("ingest_document", {"id": decomposed, "text": PHOTOSYNTHESIS})
            )
            assert first["id"] == composed and first["status"] == "created"
            again = data(await client.call_tool("ingest_document", {"id": composed, "text": PHOTOSYNTHESIS}))
            assert again["status"] == "unchanged"
            for form in (decomposed, composed):
                assert data(await client.call_tool("get_document", {"id": form}))["id"] == composed
            assert [d["id"] for d in data(await client.call_tool("list_documents", {}))["documents"]] == [
                composed
            ]
            assert data(await client.call_tool("delete_document", {"id": decomposed}))["id"] == composed
