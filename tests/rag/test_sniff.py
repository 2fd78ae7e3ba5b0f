"""Telling text from binary, encodings, bounded decompression, and which hidden entries a glob names."""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
from pathlib import Path

import pytest

from mcp_gemma.rag.sniff import FileSkipped, binary_kind, decode, read_bytes
from mcp_gemma.rag.walk import compile_glob, walk_matching


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        (b"plain ascii\n", "plain ascii\n", "utf-8"),
        ("na\u00efve \u2014 caf\u00e9".encode(), "na\u00efve \u2014 caf\u00e9", "utf-8"),
        (codecs.BOM_UTF8 + b"bom", "bom", "utf-8"),
        ("\ufeffwide".encode("utf-16-le"), "wide", "utf-16"),
        ("\ufeffwide".encode("utf-16-be"), "wide", "utf-16"),
        ("\ufeffvery wide".encode("utf-32-le"), "very wide", "utf-32"),
        (b"caf\xe9 cr\xe8me\n", "caf\u00e9 cr\u00e8me\n", "latin-1"),
        (b"\x93quoted\x94 \x96 dash", "\u201cquoted\u201d \u2013 dash", "cp1252"),
        (b"\x81 undefined in cp1252 \xe9", "\x81 undefined in cp1252 \u00e9", "latin-1"),
        (b"page one\x0cpage two\x1b[1mbold\x08\n", "page one\x0cpage two\x1b[1mbold\x08\n", "utf-8"),
    ],
)
def test_decode_sniffs_the_encoding(data: bytes, text: str, encoding: str) -> None:
    assert decode(data, "f") == (text, encoding)


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"\x7fELF\x02\x01\x01", "binary", "f is an ELF executable, not text; not read"),
        (b"abc\x00def", "binary", "f is binary data (it contains NUL bytes), not text; not read"),
        (
            b"a" * 97 + b"\x01\x02\x03",
            "binary",
            "f is binary data (3 control bytes in its first 100), not text; not read",
        ),
        (b"\x1f\x8b\x08rest", "binary", "f is gzip data (name it .gz to have it read), not text; not read"),
        (
            b"\xff\xfe\x41",
            "encoding",
            "f starts with a UTF-16 byte-order mark but is not valid in that encoding; "
            "convert it to UTF-8 first",
        ),
        (b" \n\t ", "empty", "f is empty (only whitespace)"),
    ],
)
def test_decode_refuses_with_a_reason(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(FileSkipped) as caught:
        decode(data, "f")
    assert (caught.value.reason, str(caught.value)) == (reason, message)


def test_two_control_bytes_in_a_hundred_are_still_text() -> None:
    assert binary_kind(b"a" * 98 + b"\x01\x02") is None
    assert binary_kind(b"x" * 300 + b"ustar" + b"y" * 300) is None  # 'ustar' only counts at offset 257
    assert binary_kind(b"x" * 257 + b"ustar\x0000") == "a tar archive (unpack it first)"
    assert binary_kind(b"x" * 257 + b"ustar is a word") is None
    # signatures made of letters only are not trusted: text may start that way
    for text in (b"MZ is a postal code.\n", b"GIF89a is an image format.\n", b"BZh is not bzip2.\n"):
        assert binary_kind(text) is None
    assert binary_kind(bz2.compress(b"some text")) == "bzip2 data (name it .bz2 to have it read)"


def test_read_bytes_decompresses_within_the_limit(tmp_path: Path) -> None:
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"x" * 1000))
    assert read_bytes(tmp_path / "a.txt.gz", "a.txt.gz", 1000) == (b"x" * 1000, "gzip", "a.txt")
    with pytest.raises(FileSkipped, match="decompresses to more than 999 bytes") as caught:
        read_bytes(tmp_path / "a.txt.gz", "a.txt.gz", 999)
    assert caught.value.reason == "too_large"
    (tmp_path / "b.xz").write_bytes(lzma.compress(b""))
    with pytest.raises(FileSkipped, match="empty once decompressed"):
        read_bytes(tmp_path / "b.xz", "b.xz", 1000)
    (tmp_path / "c.bz2").write_bytes(b"BZh9 truncated")
    with pytest.raises(FileSkipped, match="not valid bzip2 data") as caught:
        read_bytes(tmp_path / "c.bz2", "c.bz2", 1000)
    assert caught.value.reason == "corrupt"
    (tmp_path / "big").write_bytes(b"y" * 11)
    with pytest.raises(FileSkipped, match=r"is 11 bytes; the limit is 10 \(rag.max_file_bytes\)"):
        read_bytes(tmp_path / "big", "big", 10)


def test_hidden_entries_need_a_dot_in_the_glob(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    for rel in ("a.md", ".env", ".git/config", "sub/.cache/x.md", "sub/b.md", ".github/ci.yml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x", encoding="utf-8")

    def walk(pattern: str) -> tuple[list[str], list[tuple[str, str]]]:
        files, skipped = walk_matching(root, [root], compile_glob(pattern), 100)
        return (
            [p.relative_to(root).as_posix() for p, _ in files],
            sorted((Path(s.source).relative_to(root).as_posix(), s.reason) for s in skipped),
        )

    hidden = [(".env", "hidden"), (".git", "hidden"), (".github", "hidden"), ("sub/.cache", "hidden")]
    assert walk("**/*") == (["a.md", "sub/b.md"], hidden)
    assert walk("**/*.md") == (
        ["a.md", "sub/b.md"],
        [(".git", "hidden"), (".github", "hidden"), ("sub/.cache", "hidden")],
    )
    assert walk(".git*/**") == ([".git/config", ".github/ci.yml"], [])
    assert walk("**/.cache/*.md") == (["sub/.cache/x.md"], [(".git", "hidden"), (".github", "hidden")])
    assert walk(".*") == ([".env"], [])
