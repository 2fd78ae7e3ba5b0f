"""The in-process index saved to the data dir, so a restart replays only the changes after it.

One file per namespace, ``<data_dir>/index/<namespace>.snapshot``: a magic line, a JSON header
(format version, key layout, namespace, dimension, BM25 parameters, the change-stream position of
every slot group, the size of each section and the SHA-256 of the body) and the body, its sections
one after the other:

* ``meta``: numpy ``.npz`` of the chunk ids, each chunk's document and place, and the document heads;
* ``vectors``, ``keywords``, ``ann``: the Rust :class:`~mcp_gemma.native.VectorIndex` (f32 rows and
  int8 codes), :class:`~mcp_gemma.native.BM25Index` (postings) and, when one was serving, the
  :class:`~mcp_gemma.native.HnswIndex` graph, each in its own versioned format (``to_bytes``).

So a restart reads the built structures instead of rebuilding them. The file is written to a
temporary file, fsynced and renamed over the old one. A file that does not match in any way
(format, settings, checksum, a section the Rust core refuses, lengths that disagree, streams trimmed
past its positions) is discarded, never trusted: the index is rebuilt from Redis.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from mcp_gemma import native
from mcp_gemma.errors import McpGemmaError
from mcp_gemma.rag.docstore import DocHead, Positions

logger = logging.getLogger(__name__)

MAGIC = b"mcp-gemma index snapshot\n"
FORMAT = 2
SECTIONS = ("meta", "vectors", "keywords", "ann")  # in file order; "ann" may be absent


T = TypeVar("T")


@dataclass(slots=True)
class Meta:
    """The ``meta`` section: the chunks and documents the index's own tables are made of."""

    ids: npt.NDArray[np.uint64]
    doc_of: list[str]
    places: npt.NDArray[np.int64]  # ordinal, start, end per chunk
    heads: list[DocHead]


@dataclass(slots=True)
class Snapshot:
    """What a snapshot holds, ready to become a :class:`~mcp_gemma.rag.index.ChunkIndex`'s state."""

    positions: Positions
    meta: Meta
    vectors: native.VectorIndex
    keywords: native.BM25Index
    ann: native.HnswIndex | None


@dataclass(slots=True)
class Encoded:
    """A snapshot turned into its sections (see :func:`encode`), ready for :func:`write`."""

    positions: Positions
    chunks: int
    sections: dict[str, bytes]


def path_for(data_dir: Path, namespace: str) -> Path:
    """Where a namespace's snapshot lives."""
    return data_dir / "index" / f"{namespace}.snapshot"


def _pack(texts: list[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    encoded = [t.encode() for t in texts]
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), np.fromiter(
        (len(e) for e in encoded), dtype=np.int64, count=len(encoded)
    )


def _unpack(blob: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> list[str]:
    raw = bytes(blob)
    out, at = [], 0
    for n in lengths.tolist():
        out.append(raw[at : at + n].decode())
        at += n
    if at != len(raw):
        raise ValueError("text lengths do not add up")
    return out


def encode(snap: Snapshot) -> Encoded:
    """The sections of ``snap`` (a worker thread's job: the structures serialise with the GIL
    released; the caller keeps them from changing meanwhile)."""
    docs, doc_lengths = _pack(snap.meta.doc_of)
    heads = json.dumps([[getattr(h, f) for f in DocHead.__slots__] for h in snap.meta.heads]).encode()
    meta = io.BytesIO()
    np.savez(
        meta,
        ids=snap.meta.ids,
        places=snap.meta.places,
        doc_of=docs,
        doc_lengths=doc_lengths,
        heads=np.frombuffer(heads, dtype=np.uint8),
    )
    sections = {
        "meta": meta.getvalue(),
        "vectors": snap.vectors.to_bytes(),
        "keywords": snap.keywords.to_bytes(),
    }
    if snap.ann is not None:
        sections["ann"] = snap.ann.to_bytes()
    return Encoded(dict(snap.positions), len(snap.meta.ids), sections)


def write(path: Path, identity: dict[str, Any], enc: Encoded) -> int:
    """Write ``enc`` atomically (temporary file, fsync, rename); returns the body's size in bytes."""
    digest = hashlib.sha256()
    for data in enc.sections.values():
        digest.update(data)
    header = {
        **identity,
        "format": FORMAT,
        "positions": {str(g): p for g, p in enc.positions.items()},
        "chunks": enc.chunks,
        "sections": [[name, len(data)] for name, data in enc.sections.items()],
        "sha256": digest.hexdigest(),
    }
    # document heads and embeddings: owner-only, like the embedded server's files
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # one per writer
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
            for data in enc.sections.values():
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sum(len(d) for d in enc.sections.values())


def _discard(path: Path, reason: object) -> None:
    logger.warning("index snapshot %s discarded: %s; rebuilding from Redis", path, reason)


def _header(raw: bytes, identity: dict[str, Any]) -> tuple[dict[str, Any], int] | str:
    """The header and where the body starts, or why the file is not a snapshot for ``identity``."""
    if not raw.startswith(MAGIC):
        return "not a snapshot"
    end = raw.find(b"\n", len(MAGIC))
    if end < 0:
        return "unreadable header"
    try:
        header = json.loads(raw[len(MAGIC) : end])
    except ValueError:
        return "unreadable header"
    if not isinstance(header, dict):
        return "unreadable header"
    if header.get("format") != FORMAT:
        return f"format {header.get('format')} (this version reads {FORMAT})"
    for key, want in identity.items():
        if header.get(key) != want:
            return f"{key} is {header.get(key)!r}, now {want!r}"
    return header, end + 1


def _sections(header: dict[str, Any], start: int, total: int) -> dict[str, tuple[int, int]] | str:
    """Each section's [start, stop) in the file, or why the layout is wrong."""
    listed = header.get("sections")
    if not isinstance(listed, list):
        return "no section list"
    out: dict[str, tuple[int, int]] = {}
    at = start
    for item in listed:
        if not (isinstance(item, list) and len(item) == 2 and item[0] in SECTIONS):
            return f"unknown section {item!r}"
        name, size = item
        if name in out or not isinstance(size, int) or size < 0:
            return f"bad section {item!r}"
        out[name] = (at, at + size)
        at += size
    if at != total:
        return f"sections add up to {at - start} bytes, the body has {total - start}"
    if not {"meta", "vectors", "keywords"} <= out.keys():
        return "a section is missing"
    return out


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("index snapshot %s unreadable (%s); rebuilding from Redis", path, exc)
        return None


def _meta(raw: bytes, start: int, stop: int) -> Meta:
    with np.load(io.BytesIO(raw[start:stop]), allow_pickle=False) as arrays:
        return Meta(
            ids=arrays["ids"].astype(np.uint64),
            doc_of=_unpack(arrays["doc_of"], arrays["doc_lengths"]),
            places=arrays["places"].astype(np.int64),
            heads=[DocHead(*row) for row in json.loads(bytes(arrays["heads"]))],
        )


def _structures(
    raw: bytes, layout: dict[str, tuple[int, int]]
) -> tuple[native.VectorIndex, native.BM25Index, native.HnswIndex | None]:
    vectors = native.VectorIndex.from_bytes(raw, *layout["vectors"])
    keywords = native.BM25Index.from_bytes(raw, *layout["keywords"])
    ann = native.HnswIndex.from_bytes(raw, *layout["ann"]) if "ann" in layout else None
    return vectors, keywords, ann


DECODE_ERRORS = (McpGemmaError, ValueError, KeyError, TypeError, AttributeError, OSError, zipfile.BadZipFile)


async def load(
    path: Path, identity: dict[str, Any], dim: int, prepare: Callable[[Meta], T]
) -> tuple[Snapshot, T] | None:
    """The snapshot at ``path`` if it is whole and made for ``identity``, with what ``prepare``
    (run in a worker thread) made of its chunks and documents; else ``None`` (and why, in the log).

    The checksum, the Rust structures (read in place, without copies, the GIL released) and
    ``prepare`` run at once in worker threads; nothing decoded is used unless the checksum matches,
    and the Rust loaders validate what they read either way."""
    raw = await anyio.to_thread.run_sync(_read, path)
    if raw is None:
        return None
    found = _header(raw, identity)
    if isinstance(found, str):
        _discard(path, found)
        return None
    header, start = found
    layout = _sections(header, start, len(raw))
    if isinstance(layout, str):
        _discard(path, layout)
        return None
    digest: list[str] = []
    structures: list[tuple[native.VectorIndex, native.BM25Index, native.HnswIndex | None]] = []
    tables: list[tuple[Meta, T]] = []
    errors: list[BaseException] = []

    async def check() -> None:
        digest.append(
            await anyio.to_thread.run_sync(lambda: hashlib.sha256(memoryview(raw)[start:]).hexdigest())
        )

    async def decode() -> None:
        try:
            structures.append(await anyio.to_thread.run_sync(_structures, raw, layout))
        except DECODE_ERRORS as exc:
            errors.append(exc)

    async def prepared() -> None:
        try:
            meta = await anyio.to_thread.run_sync(_meta, raw, *layout["meta"])
            if len(meta.ids) != len(meta.doc_of) or meta.places.shape != (len(meta.ids), 3):
                raise ValueError("chunk ids, documents and places of different lengths")
            tables.append((meta, await anyio.to_thread.run_sync(prepare, meta)))
        except DECODE_ERRORS as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(check)
        tg.start_soon(decode)
        tg.start_soon(prepared)
    if digest != [header.get("sha256")]:
        _discard(path, "checksum mismatch")
        return None
    if errors:
        _discard(path, errors[0])
        return None
    (vectors, keywords, ann), (meta, made) = structures[0], tables[0]
    try:
        positions = {int(g): str(p) for g, p in header["positions"].items()}
    except DECODE_ERRORS as exc:
        _discard(path, exc)
        return None
    snap = Snapshot(positions, meta, vectors, keywords, ann)
    problem = _mismatch(snap, dim)
    if problem is not None:
        _discard(path, problem)
        return None
    return snap, made


def _mismatch(snap: Snapshot, dim: int) -> str | None:
    """What in a decoded snapshot disagrees with itself, if anything."""
    ids = snap.meta.ids
    n = len(ids)
    if not (len(snap.vectors) == len(snap.keywords) == n):
        return "inconsistent lengths"
    if snap.vectors.dim != dim or (snap.ann is not None and snap.ann.dim != dim):
        return "vectors of another dimension"
    if not np.array_equal(np.sort(ids), np.sort(snap.vectors.ids())):
        return "chunk ids differ from the vector index's"
    if snap.ann is not None and len(snap.ann) != n:
        return "the HNSW graph does not hold every chunk"
    return None
