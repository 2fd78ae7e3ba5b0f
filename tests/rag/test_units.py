"""Pure pieces of the knowledge base: validation, filters, MMR, stitching, paths and extraction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mcp_gemma.errors import AccessDeniedError, InvalidInputError
from mcp_gemma.outbound_http import host_allowed
from mcp_gemma.rag.chunking import split
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.docstore import StoredChunk
from mcp_gemma.rag.extract import expand, extract_file, resolve_path
from mcp_gemma.rag.index import MISSING, lookup
from mcp_gemma.rag.search import mmr, stitch
from mcp_gemma.rag.validation import check_doc_id, check_text, metadata_json, parse_filter


def test_metadata_json_is_canonical_and_refuses_nan() -> None:
    assert metadata_json({"b": 1, "a": [True, None, "x"]}, 1000) == '{"a":[true,null,"x"],"b":1}'
    for bad, where in (({"x": math.nan}, "'x'"), ({"a": {"b": [0, -math.inf]}}, "'a.b[1]'")):
        with pytest.raises(InvalidInputError, match="NaN and infinity") as err:
            metadata_json(bad, 1000)
        assert where in str(err.value)
    with pytest.raises(InvalidInputError, match=r"rag\.max_metadata_bytes"):
        metadata_json({"x": "y" * 100}, 50)
    with pytest.raises(InvalidInputError, match="JSON values only"):
        metadata_json({"x": object()}, 1000)


def test_text_and_id_checks() -> None:
    assert check_text("héllo", 100) == 6
    for bad, message in (
        ("", "empty"),
        ("  \n", "empty"),
        ("a\x00b", "binary"),
        ("x" * 101, "the limit is 100"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            check_text(bad, 100)
    with pytest.raises(InvalidInputError, match="surrogate"):
        check_text("bad \ud800", 100)
    assert check_doc_id("notes/a b.md") == "notes/a b.md"
    for bad in ("", " x", "x\n", "a" * 513):
        with pytest.raises(InvalidInputError):
            check_doc_id(bad)


def test_filters_equality_membership_ranges_and_lists() -> None:
    (eq,) = parse_filter({"lang": "en"})
    assert eq.matches("en") and not eq.matches("de") and eq.matches(["de", "en"])
    (member,) = parse_filter({"tag": {"$in": ["a", 2]}})
    assert member.matches("a") and member.matches(2) and not member.matches("b")
    (rng,) = parse_filter({"year": {"$gte": 2020, "$lt": 2024}})
    assert rng.matches(2020) and rng.matches(2023.5) and not rng.matches(2024) and not rng.matches("2021")
    (flag,) = parse_filter({"draft": True})
    assert flag.matches(True) and not flag.matches(1)  # True == 1 in Python, not in a filter
    assert parse_filter(None) == [] and parse_filter({}) == []
    for bad, message in (
        ({"x": {"$near": 1}}, "unknown operator"),
        ({"x": {}}, "unknown operator"),
        ({"x": {"$in": []}}, "non-empty list"),
        ({"x": {"$gt": "a"}}, "finite number"),
        ({"x": {"$gt": math.nan}}, "finite number"),
        ({"x": math.nan}, "NaN"),
        ({"x": [1, 2]}, "string, number, boolean or null"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            parse_filter(bad)


def test_lookup_follows_dots() -> None:
    meta = {"a": {"b": 3}, "c.d": 4}
    assert lookup(meta, "a.b") == 3
    assert lookup(meta, "c.d") == 4
    assert lookup(meta, "a.x") is MISSING


def test_mmr_prefers_novel_results() -> None:
    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    vecs = np.array([[0.99, 0.14, 0.0], [0.99, 0.14, 0.0], [0.8, 0.0, 0.6]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rel = list(vecs @ q)
    assert mmr(q, vecs, rel, 2, diversity=0.0) == [0, 1]
    assert mmr(q, vecs, rel, 2, diversity=0.5) == [0, 2]
    assert mmr(q, vecs, [], 2, 0.5) == []


def test_stitch_drops_overlap() -> None:
    text = "alpha beta gamma delta epsilon"
    pieces = [
        StoredChunk(2, "d", 1, 6, 16, text[6:16], None),
        StoredChunk(1, "d", 0, 0, 11, text[0:11], None),
    ]
    assert stitch(pieces) == (text[0:16], 0, 16)
    gap = [StoredChunk(1, "d", 0, 0, 5, "alpha", None), StoredChunk(2, "d", 1, 11, 16, "gamma", None)]
    assert stitch(gap) == ("alpha gamma", 0, 16)


def test_chunks_round_trip_offsets() -> None:
    text = "Ünïcode 🎉 sentences. " * 200 + "终于结束了。"
    chunks = split(text, RagSettings(chunk_size=120, chunk_overlap=20))
    assert len(chunks) > 10
    assert all(text[c.start : c.end] == c.text and len(c.text) <= 120 for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].end == len(text)


def test_host_allow_list() -> None:
    allowed = ["docs.python.org", "*.example.org"]
    assert host_allowed("docs.python.org", allowed)
    assert host_allowed("a.b.example.org", allowed) and host_allowed("example.org", allowed)
    assert not host_allowed("python.org", allowed) and not host_allowed("badexample.org", allowed)


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# A", encoding="utf-8")
    (root / "sub" / "b.txt").write_text("B", encoding="utf-8")
    (root / "sub" / "c.exe").write_bytes(b"\x00")
    (tmp_path / "outside.txt").write_text("secret", encoding="utf-8")
    (root / "escape.txt").symlink_to(tmp_path / "outside.txt")
    (root / "inner.txt").symlink_to(root / "a.md")
    return root.resolve()


def test_paths_stay_inside_roots(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert resolve_path("a.md", [root]) == (root / "a.md", root)
    assert resolve_path(str(root / "sub"), [root]) == (root / "sub", root)
    assert resolve_path("inner.txt", [root]) == (root / "a.md", root)
    for bad in (
        "../outside.txt",
        "sub/../../outside.txt",
        str(tmp_path / "outside.txt"),
        "escape.txt",
        "/etc/passwd",
    ):
        with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
            resolve_path(bad, [root])
    with pytest.raises(InvalidInputError, match="does not exist"):
        resolve_path("nope.md", [root])
    with pytest.raises(AccessDeniedError, match="no allowed_roots"):
        resolve_path("a.md", [])
    files, problems = expand(".", [root], "**/*")
    # inner.txt -> a.md: a file reached through a link as well is read once
    assert sorted(p.relative_to(root).as_posix() for p, _ in files) == ["a.md", "sub/b.txt", "sub/c.exe"]
    assert [(Path(p.source).name, p.reason) for p in problems] == [("escape.txt", "outside_roots")]
    files, _ = expand(".", [root], "**/*.txt")
    assert sorted(p.name for p, _ in files) == ["a.md", "b.txt"]  # inner.txt -> a.md


def _pdf(text: str) -> bytes:
    """A minimal one-page PDF whose page shows ``text`` (Helvetica)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_extract_formats(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "page.html").write_text(
        "<html><head><title>T</title><script>x()</script></head>"
        "<body><h1>Head</h1><p>Body text</p></body></html>",
        encoding="utf-8",
    )
    (root / "doc.pdf").write_bytes(_pdf("Hello from a PDF"))
    (root / "one.json").write_text(
        '{"id": "j1", "text": "json text", "metadata": {"k": 1}}', encoding="utf-8"
    )
    (root / "many.json").write_text(
        '[{"content": "first"}, {"text": "second", "lang": "en"}]', encoding="utf-8"
    )
    (root / "raw.json").write_text('{"no": "text field"}', encoding="utf-8")
    (root / "lines.jsonl").write_text('{"text": "l1"}\n\n{"text": "l2", "id": 7}\n', encoding="utf-8")
    (root / "bom.txt").write_bytes("\ufeffwith bom".encode())
    (root / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n', encoding="utf-8")
    (root / "big.txt").write_text("x" * 200, encoding="utf-8")

    (html,) = extract_file(root / "page.html", root, 10_000)
    assert html.text == "Head\nBody text" and html.metadata == {
        "source": "page.html",
        "format": "html",
        "title": "T",
    }
    (pdf,) = extract_file(root / "doc.pdf", root, 10_000)
    assert pdf.text == "Hello from a PDF" and pdf.metadata["format"] == "pdf"
    (one,) = extract_file(root / "one.json", root, 10_000)
    assert (one.id, one.text, one.metadata) == (
        "j1",
        "json text",
        {"source": "one.json", "format": "json", "k": 1},
    )
    many = extract_file(root / "many.json", root, 10_000)
    assert [(d.text, d.source) for d in many] == [("first", "many.json#0"), ("second", "many.json#1")]
    assert many[1].metadata["lang"] == "en"
    (raw,) = extract_file(root / "raw.json", root, 10_000)
    assert '"no": "text field"' in raw.text
    lines = extract_file(root / "lines.jsonl", root, 10_000)
    assert [(d.text, d.id) for d in lines] == [("l1", None), ("l2", "7")]
    assert extract_file(root / "bom.txt", root, 10_000)[0].text == "with bom"
    with pytest.raises(InvalidInputError, match="line 2 is not valid JSON"):
        extract_file(root / "bad.jsonl", root, 10_000)
    with pytest.raises(InvalidInputError, match=r"rag\.max_file_bytes"):
        extract_file(root / "big.txt", root, 100)
    (root / "scan.pdf").write_bytes(_pdf(""))
    with pytest.raises(InvalidInputError, match="no extractable text"):
        extract_file(root / "scan.pdf", root, 10_000)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(InvalidInputError, match="PDF"):
        extract_file(root / "broken.pdf", root, 10_000)
