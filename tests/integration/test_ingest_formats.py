"""A folder as Debian installs documentation: files without a suffix, compressed ones, other encodings.

Through ``mcp-gemma ingest`` (Typer's runner) and through ``batch_ingest`` over an MCP client session,
on the real Redis and MiniLM: exactly which files go in, and every other one listed with its reason.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from typer.testing import CliRunner

from mcp_gemma.cli import app
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

pytestmark = pytest.mark.anyio

MAX_FILE_BYTES = 100_000
INGESTED = {
    "README": ("text", {}),
    "README.Debian": ("text", {}),
    "README.source": ("text", {"encoding": "latin-1"}),
    "changelog.gz": ("text", {"compression": "gzip"}),
    "notes.txt.bz2": ("txt", {"compression": "bzip2"}),
    "NEWS.md.xz": ("md", {"compression": "xz"}),
}
SKIPPED = {
    ".git": "hidden",
    "EMPTY": "empty",
    "bomb.gz": "too_large",
    "broken.gz": "corrupt",
    "data.bin": "binary",
    "logo.png": "binary",
}
REASONS = {"binary": 2, "corrupt": 1, "empty": 1, "hidden": 1, "too_large": 1}


def _docs_folder(root: Path) -> Path:
    root.mkdir()
    (root / "README").write_text("Tides are caused by the pull of the moon.\n", encoding="utf-8")
    (root / "README.Debian").write_text("This package is built with Debian defaults.\n", encoding="utf-8")
    (root / "README.source").write_bytes("Le caf\u00e9 est ferm\u00e9 le lundi.\n".encode("latin-1"))
    (root / "changelog.gz").write_bytes(gzip.compress(b"pkg (1.0-1) unstable; urgency=low\n  * First.\n"))
    (root / "notes.txt.bz2").write_bytes(bz2.compress(b"Glaciers are slow rivers of ice.\n"))
    (root / "NEWS.md.xz").write_bytes(lzma.compress(b"# News\n\nVersion 2 adds hybrid search.\n"))
    (root / "EMPTY").write_bytes(b"")
    (root / "data.bin").write_bytes(bytes(range(256)))
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"IHDR" * 8)
    (root / "bomb.gz").write_bytes(gzip.compress(b"a" * (MAX_FILE_BYTES + 1)))
    (root / "broken.gz").write_bytes(b"this is not gzip data\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    return root


def _check(report: dict[str, Any]) -> None:
    assert sorted(r["id"] for r in report["ingested"]) == sorted(f"file:{n}" for n in INGESTED)
    assert report["created"] == len(INGESTED)
    assert {Path(f["source"]).name: f["reason"] for f in report["failed"]} == SKIPPED
    assert report["skipped"] == REASONS
    errors = {Path(f["source"]).name: f["error"] for f in report["failed"]}
    assert "the limit (rag.max_file_bytes) that keeps a compression bomb out" in errors["bomb.gz"]
    assert errors["broken.gz"].startswith("broken.gz is not valid gzip data")
    assert errors["logo.png"] == "logo.png is a PNG image, not text; not read"
    assert errors["EMPTY"] == "EMPTY is empty"
    assert "name it in the glob, e.g. '.git/**'" in errors[".git"]


async def test_batch_ingest_reads_text_by_content(settings: Settings, tmp_path: Path) -> None:
    root = _docs_folder(tmp_path / "doc")
    with_root = load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
        namespace=settings.namespace,
        allowed_roots=[str(root)],
        rag={"max_file_bytes": MAX_FILE_BYTES},
    )
    with anyio.fail_after(240):
        async with Client(create_server(with_root)) as client:
            result = await client.call_tool("batch_ingest", {"paths": ["."]})
            assert not result.is_error
            _check(result.structured_content or {})
            for name, (fmt, extra) in INGESTED.items():
                doc = await client.call_tool("get_document", {"id": f"file:{name}"})
                assert (doc.structured_content or {})["metadata"] == {"source": name, "format": fmt, **extra}
            latin = await client.call_tool("get_document", {"id": "file:README.source"})
            assert (latin.structured_content or {})["text"] == "Le caf\u00e9 est ferm\u00e9 le lundi.\n"
            news = await client.read_resource("doc://file%3ANEWS.md.xz")
            assert news.contents[0].text == "# News\n\nVersion 2 adds hybrid search.\n"  # type: ignore[union-attr]
            hidden = await client.call_tool("batch_ingest", {"paths": ["."], "glob": ".git/**"})
            assert [r["id"] for r in (hidden.structured_content or {})["ingested"]] == ["file:.git/config"]


def test_cli_ingest_lists_every_skipped_file(settings: Settings, tmp_path: Path) -> None:
    root = _docs_folder(tmp_path / "doc")
    assert settings.redis_url is not None
    common = ["--data-dir", str(settings.data_dir), "--redis-url", settings.redis_url.get_secret_value()]
    env = {"MCP_GEMMA_NAMESPACE": settings.namespace, "MCP_GEMMA_RAG__MAX_FILE_BYTES": str(MAX_FILE_BYTES)}
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(root), *common], env=env)
    assert done.exit_code == 0, done.output
    _check(json.loads(done.stdout))
    said = " ".join(done.stderr.split())
    assert (
        "6 created, 0 replaced, 0 unchanged, 6 skipped "
        "(2 binary, 1 corrupt, 1 empty, 1 hidden, 1 too_large)" in said
    )
    for name, reason in SKIPPED.items():
        assert f"skipped ({reason}) {root / name}:" in said
    again = runner.invoke(app, ["ingest", str(root), *common], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == len(INGESTED)
