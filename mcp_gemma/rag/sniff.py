"""A file's bytes into text: compressed files opened with a bound, text told from binary by its content.

Debian installs most documentation as ``README``, ``README.Debian``, ``changelog.gz``: no suffix says
"text", and a third is compressed. So a file's format is decided by what it holds, not by its name:
``.gz`` / ``.bz2`` / ``.xz`` are decompressed (at most ``max_bytes`` out, so a compression bomb is a
refusal, not a full disk or memory), then a byte-order mark, UTF-8, and a single-byte fallback
(cp1252, then latin-1) are tried; a file with NUL bytes, a known binary signature or many control
bytes is refused as binary. Every refusal is a :class:`FileSkipped` carrying a short reason code
that the ingest report and the CLI count.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import re
from pathlib import Path
from typing import Literal, NamedTuple

from mcp_gemma.errors import InvalidInputError

SkipReason = Literal[
    "binary",
    "empty",
    "too_large",
    "encoding",
    "corrupt",
    "invalid",
    "unreadable",
    "outside_roots",
    "hidden",
    "limit",
]


class SkippedPath(NamedTuple):
    """A file or folder passed over, and why."""

    source: str
    reason: SkipReason
    error: str


COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
SAMPLE_BYTES = 8192
# Above this share of control bytes (not tab, newline, CR, form feed, ESC, backspace) it is not text.
MAX_CONTROL_SHARE = 0.02
_READ_CHUNK = 1 << 16

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Signatures of common binary formats, so the reason names what the file is; each starts with a byte
# that plain text does not (a signature of letters only, like GIF's, is left to the NUL check).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x7fELF", "an ELF executable"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"PK\x03\x04", "a ZIP archive (also docx, xlsx, jar)"),
    (0, b"\x1f\x8b", "gzip data (name it .gz to have it read)"),
    (0, b"\xfd7zXZ\x00", "xz data (name it .xz to have it read)"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"\x28\xb5\x2f\xfd", "zstd data"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (257, b"ustar\x00", "a tar archive (unpack it first)"),
    (257, b"ustar  \x00", "a tar archive (unpack it first)"),
)
_C1 = re.compile(rb"[\x80-\x9f]")
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_CONTROL = frozenset(range(0x20)) - {0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1B} | {0x7F}


class FileSkipped(InvalidInputError):
    """A file that is not ingested, with a reason code (binary, empty, too_large, ...)."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason: SkipReason = reason


def read_bytes(path: Path, source: str, max_bytes: int) -> tuple[bytes, str | None, str]:
    """The file's content, decompressed when its suffix says so; returns ``(data, compression, name)``.

    ``name`` is the file name without the compression suffix (``notes.txt.bz2`` -> ``notes.txt``),
    which decides the format. At most ``max_bytes`` are read or produced.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise FileSkipped(
            "too_large", f"{source} is {size:,} bytes; the limit is {max_bytes:,} (rag.max_file_bytes)"
        )
    if size == 0:
        raise FileSkipped("empty", f"{source} is empty")
    compression = COMPRESSIONS.get(path.suffix.lower())
    if compression is None:
        return path.read_bytes(), None, path.name
    try:
        with _open_compressed(path, compression) as stream:
            data = _read_bounded(stream, max_bytes)
    except (EOFError, OSError, lzma.LZMAError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
            raise  # a real I/O failure, reported as unreadable by the caller
        raise _corrupt(source, compression, exc) from None
    return _unpacked(data, source, max_bytes), compression, path.name[: -len(path.suffix)]


def unpack_bytes(data: bytes, name: str, source: str, max_bytes: int) -> tuple[bytes, str | None, str]:
    """:func:`read_bytes` for content already in memory (an upload named ``name``)."""
    if len(data) > max_bytes:
        raise FileSkipped(
            "too_large", f"{source} is {len(data):,} bytes; the limit is {max_bytes:,} (rag.max_file_bytes)"
        )
    if not data:
        raise FileSkipped("empty", f"{source} is empty")
    suffix = Path(name).suffix.lower()
    compression = COMPRESSIONS.get(suffix)
    if compression is None:
        return data, None, name
    try:
        with _open_compressed(io.BytesIO(data), compression) as stream:
            out = _read_bounded(stream, max_bytes)
    except (EOFError, OSError, lzma.LZMAError) as exc:
        raise _corrupt(source, compression, exc) from None
    return _unpacked(out, source, max_bytes), compression, name[: -len(suffix)]


def _corrupt(source: str, compression: str, exc: BaseException) -> FileSkipped:
    return FileSkipped("corrupt", f"{source} is not valid {compression} data ({exc or type(exc).__name__})")


def _unpacked(data: bytes | None, source: str, max_bytes: int) -> bytes:
    if data is None:
        raise FileSkipped(
            "too_large",
            f"{source} decompresses to more than {max_bytes:,} bytes, the limit (rag.max_file_bytes) "
            "that keeps a compression bomb out; not read",
        )
    if not data:
        raise FileSkipped("empty", f"{source} is empty once decompressed")
    return data


def _open_compressed(path: Path | io.BytesIO, compression: str) -> io.BufferedIOBase:
    if compression == "gzip":
        return (
            gzip.GzipFile(fileobj=path, mode="rb")
            if isinstance(path, io.BytesIO)
            else gzip.GzipFile(path, "rb")
        )
    if compression == "bzip2":
        return bz2.BZ2File(path, "rb")
    return lzma.LZMAFile(path, "rb")


def _read_bounded(stream: io.BufferedIOBase, max_bytes: int) -> bytes | None:
    """Up to ``max_bytes`` from ``stream``; None when there is more."""
    parts: list[bytes] = []
    total = 0
    while True:
        block = stream.read(min(_READ_CHUNK, max_bytes + 1 - total))
        if not block:
            return b"".join(parts)
        parts.append(block)
        total += len(block)
        if total > max_bytes:
            return None


def binary_kind(data: bytes) -> str | None:
    """What a binary file is (by signature, NUL bytes or control bytes), or None when it may be text."""
    for offset, magic, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if _BZIP2.match(data):
        return "bzip2 data (name it .bz2 to have it read)"
    sample = data[:SAMPLE_BYTES]
    if b"\x00" in sample:
        return "binary data (it contains NUL bytes)"
    controls = sum(1 for b in sample if b in _CONTROL)
    if controls > MAX_CONTROL_SHARE * len(sample):
        return f"binary data ({controls} control bytes in its first {len(sample):,})"
    return None


def decode(data: bytes, source: str) -> tuple[str, str]:
    """Text of ``data`` and the encoding used (``utf-8``, ``utf-16``, ``cp1252``, ``latin-1`` ...).

    A byte-order mark decides; otherwise UTF-8, then latin-1, or cp1252 when bytes 0x80-0x9f (its
    curly quotes and dashes) occur; both decode any byte, so they come after the binary checks.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                raise FileSkipped(
                    "encoding",
                    f"{source} starts with a {encoding.removesuffix('-sig').upper()} byte-order mark "
                    "but is not valid in that encoding; convert it to UTF-8 first",
                ) from None
            return _nonempty(text, source), "utf-8" if encoding == "utf-8-sig" else encoding
    kind = binary_kind(data)
    if kind is not None:
        raise FileSkipped("binary", f"{source} is {kind}, not text; not read")
    try:
        return _nonempty(data.decode("utf-8"), source), "utf-8"
    except UnicodeDecodeError:
        pass
    if _C1.search(data) is None:  # latin-1 and cp1252 agree on all the rest
        return _nonempty(data.decode("latin-1"), source), "latin-1"
    try:
        return _nonempty(data.decode("cp1252"), source), "cp1252"
    except UnicodeDecodeError:  # cp1252 leaves 0x81, 0x8d, 0x8f, 0x90, 0x9d undefined
        return _nonempty(data.decode("latin-1"), source), "latin-1"


def _nonempty(text: str, source: str) -> str:
    if not text.strip():
        raise FileSkipped("empty", f"{source} is empty (only whitespace)")
    return text
