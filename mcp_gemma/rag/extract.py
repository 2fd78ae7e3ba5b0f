"""Files into documents: path checks against the allowed roots and text extraction per format.

Paths are resolved (symlinks followed) before they are checked, so neither ``..`` nor a symlink
can lead outside a root; folders are walked by ``walk``, which follows no link out of the roots and
reads no hidden entry the glob does not name. Every file found is tried: ``.gz`` / ``.bz2`` / ``.xz``
are decompressed (bounded), and the name left decides the format: html (selectolax), pdf (pypdf),
json (an object with ``text``, a list of them, or any JSON as text), jsonl (one object per line),
and anything else is text when its content is (``sniff``: encoding detected, binary refused).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_gemma.errors import AccessDeniedError, InvalidInputError
from mcp_gemma.rag.sniff import FileSkipped, SkippedPath, decode, read_bytes
from mcp_gemma.rag.walk import compile_glob, inside, walk_matching

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".log"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".json", ".jsonl", ".ndjson"}
MAX_FILES = 100_000


@dataclass
class ExtractedDoc:
    """Text pulled from a file (or one record of a JSON / JSONL file)."""

    text: str
    source: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def resolve_path(raw: str, roots: list[Path]) -> tuple[Path, Path]:
    """The real path of ``raw`` and the allowed root it lies in; refuses anything outside the roots.

    A relative path is taken relative to each root in turn (the first that exists wins).
    """
    if not roots:
        raise AccessDeniedError(
            "file ingestion is off: no allowed_roots are configured "
            "(set MCP_GEMMA_ALLOWED_ROOTS='[\"/path\"]')"
        )
    if "\x00" in raw:
        raise InvalidInputError("path contains a NUL character")
    given = Path(raw).expanduser()
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=False)
        except (OSError, RuntimeError) as exc:  # symlink loop, permission
            raise InvalidInputError(f"cannot resolve {raw!r}: {exc}") from None
        root = inside(real, roots)
        if root is None:
            # Where it leads stays unsaid: the message must not describe anything outside the roots.
            raise AccessDeniedError(
                f"{raw!r} is outside the allowed roots "
                f"({', '.join(str(r) for r in roots)}); symlinks and '..' cannot leave a root"
            )
        if real.exists():
            return real, root
    raise InvalidInputError(
        f"{raw!r} does not exist"
        + ("" if given.is_absolute() else f" under {', '.join(str(r) for r in roots)}")
    )


def expand(raw: str, roots: list[Path], pattern: str) -> tuple[list[tuple[Path, Path]], list[SkippedPath]]:
    """Files named by ``raw`` (a file, or a folder searched with the glob ``pattern``).

    Returns ``(files with their root, what was passed over)``: links out of the roots, hidden
    entries the glob does not name and files past the limits, each with its path and reason.
    """
    glob = compile_glob(pattern)
    real, root = resolve_path(raw, roots)
    if real.is_file():
        return [(real, root)], []
    if not real.is_dir():
        raise InvalidInputError(f"{raw!r} is neither a regular file nor a folder")
    return walk_matching(real, roots, glob, MAX_FILES)


def html_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page and its title."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, template, svg"):
        node.decompose()
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else None
    body = tree.body or tree.root
    text = body.text(separator="\n", strip=True) if body is not None else ""
    return text, title or None


def _pdf_text(data: bytes, source: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise FileSkipped("invalid", f"{source} is an encrypted PDF; decrypt it first")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise FileSkipped("invalid", f"{source} is not a readable PDF: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise FileSkipped("empty", f"{source} has no extractable text (a scanned PDF needs OCR first)")
    return text


def _record(obj: Any, source: str, where: str) -> ExtractedDoc:
    if isinstance(obj, dict) and isinstance(obj.get("text", obj.get("content")), str):
        text = obj.get("text", obj.get("content"))
        meta = (
            obj.get("metadata")
            if isinstance(obj.get("metadata"), dict)
            else {
                k: v
                for k, v in obj.items()
                if k not in ("text", "content", "id") and not isinstance(v, dict | list)
            }
        )
        doc_id = obj.get("id")
        return ExtractedDoc(
            str(text), f"{source}{where}", str(doc_id) if doc_id is not None else None, dict(meta or {})
        )
    return ExtractedDoc(json.dumps(obj, ensure_ascii=False, indent=1), f"{source}{where}")


def _too_deep(source: str) -> str:
    # json.loads and json.dumps recurse once per level, so ~1000 levels exhaust Python's stack.
    return f"{source} nests JSON arrays and objects too deeply to read; flatten it"


def extract_file(path: Path, root: Path, max_bytes: int) -> list[ExtractedDoc]:
    """Documents in one file (several for JSON lists and JSONL); raises :class:`FileSkipped` naming it."""
    rel = path.relative_to(root).as_posix() if path != root else path.name
    source = rel
    data, compression, name = read_bytes(path, source, max_bytes)
    return extract_data(data, source, name=name, compression=compression)


def extract_data(
    data: bytes, source: str, *, name: str | None = None, compression: str | None = None
) -> list[ExtractedDoc]:
    """Documents in the (decompressed) bytes of a file called ``source``: one read from the allowed
    roots, or one uploaded to the REST API. ``name`` (default ``source``) without any compression
    suffix gives the format; an unknown suffix means text, if the content is."""
    suffix = Path(name or source).suffix.lower()
    known = suffix in SUPPORTED_SUFFIXES
    base: dict[str, Any] = {"source": source, "format": suffix.lstrip(".") if known else "text"}
    if compression is not None:
        base["compression"] = compression
    if suffix == ".pdf":
        return [ExtractedDoc(_pdf_text(data, source), source, None, base)]
    text, encoding = decode(data, source)
    if encoding != "utf-8":
        base["encoding"] = encoding
    if suffix in HTML_SUFFIXES:
        body, title = html_text(text)
        meta = {**base, "title": title} if title else base
        return [ExtractedDoc(body, source, None, meta)]
    if suffix == ".json":
        try:
            obj = json.loads(text)
            items = obj if isinstance(obj, list) else [obj]
            docs = [
                _record(item, source, f"#{i}" if isinstance(obj, list) else "")
                for i, item in enumerate(items)
            ]
        except json.JSONDecodeError as exc:
            raise FileSkipped("invalid", f"{source} is not valid JSON: {exc}") from None
        except RecursionError:
            raise FileSkipped("invalid", _too_deep(source)) from None
    elif suffix in (".jsonl", ".ndjson"):
        docs = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append(_record(json.loads(line), source, f"#L{n}"))
            except json.JSONDecodeError as exc:
                raise FileSkipped("invalid", f"{source} line {n} is not valid JSON: {exc}") from None
            except RecursionError:
                raise FileSkipped("invalid", _too_deep(f"{source} line {n}")) from None
    else:
        return [ExtractedDoc(text, source, None, base)]
    for doc in docs:
        doc.metadata = {**base, **doc.metadata}
    return docs
