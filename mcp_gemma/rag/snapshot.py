"""The in-process index saved to the data dir, so a restart replays only the changes after it.

One file per namespace, ``<data_dir>/index/<namespace>.snapshot``: a magic line, a JSON header
(format version, key layout, namespace, dimension, BM25 parameters, the change-stream position of
every slot group and the SHA-256 of the body) and a body (numpy ``.npz``: chunk ids, f32 rows, chunk
places, chunk texts for the BM25 index, document heads). It is written to a temporary file, fsynced
and renamed over the old one. A file that does not match in any way (format, settings, checksum,
streams trimmed past its positions) is discarded, never trusted: the index is rebuilt from Redis.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mcp_gemma.rag.docstore import DocHead, Positions

logger = logging.getLogger(__name__)

MAGIC = b"mcp-gemma index snapshot\n"
FORMAT = 1


@dataclass(slots=True)
class Snapshot:
    """What a snapshot holds, ready to load into a :class:`~mcp_gemma.rag.index.ChunkIndex`."""

    positions: Positions
    ids: npt.NDArray[np.uint64]
    vectors: npt.NDArray[np.float32]
    doc_of: list[str]
    places: npt.NDArray[np.int64]  # ordinal, start, end per chunk
    texts: list[str]
    heads: list[DocHead]


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


def save(path: Path, identity: dict[str, Any], snap: Snapshot) -> int:
    """Write ``snap`` atomically; returns its size in bytes."""
    texts, text_lengths = _pack(snap.texts)
    docs, doc_lengths = _pack(snap.doc_of)
    heads = json.dumps([[getattr(h, f) for f in DocHead.__slots__] for h in snap.heads]).encode()
    body = io.BytesIO()
    np.savez(
        body,
        ids=snap.ids,
        vectors=snap.vectors,
        places=snap.places,
        doc_of=docs,
        doc_lengths=doc_lengths,
        texts=texts,
        text_lengths=text_lengths,
        heads=np.frombuffer(heads, dtype=np.uint8),
    )
    data = body.getvalue()
    header = {
        **identity,
        "format": FORMAT,
        "positions": {str(g): p for g, p in snap.positions.items()},
        "chunks": len(snap.ids),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # document text and embeddings: owner-only, like the embedded server's files
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # one per writer
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(data)


def load(path: Path, identity: dict[str, Any]) -> Snapshot | None:
    """The snapshot at ``path`` if it is whole and made for ``identity``; else ``None`` (and why, in
    the log)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("index snapshot %s unreadable (%s); rebuilding from Redis", path, exc)
        return None
    reason = None
    header: dict[str, Any] = {}
    data = b""
    if not raw.startswith(MAGIC):
        reason = "not a snapshot"
    else:
        line, _, data = raw[len(MAGIC) :].partition(b"\n")
        try:
            header = json.loads(line)
        except ValueError:
            reason = "unreadable header"
    if reason is None and header.get("format") != FORMAT:
        reason = f"format {header.get('format')} (this version reads {FORMAT})"
    if reason is None:
        for key, want in identity.items():
            if header.get(key) != want:
                reason = f"{key} is {header.get(key)!r}, now {want!r}"
                break
    if reason is None and hashlib.sha256(data).hexdigest() != header.get("sha256"):
        reason = "checksum mismatch"
    if reason is not None:
        logger.warning("index snapshot %s discarded: %s; rebuilding from Redis", path, reason)
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            texts = _unpack(arrays["texts"], arrays["text_lengths"])
            doc_of = _unpack(arrays["doc_of"], arrays["doc_lengths"])
            heads = [DocHead(*row) for row in json.loads(bytes(arrays["heads"]))]
            snap = Snapshot(
                positions={int(g): str(p) for g, p in header["positions"].items()},
                ids=arrays["ids"].astype(np.uint64),
                vectors=np.ascontiguousarray(arrays["vectors"], dtype=np.float32),
                doc_of=doc_of,
                places=arrays["places"].astype(np.int64),
                texts=texts,
                heads=heads,
            )
    except (ValueError, KeyError, TypeError, OSError) as exc:
        logger.warning("index snapshot %s discarded: %s; rebuilding from Redis", path, exc)
        return None
    n = len(snap.ids)
    if not (len(snap.vectors) == len(snap.doc_of) == len(snap.places) == len(snap.texts) == n):
        logger.warning("index snapshot %s discarded: inconsistent lengths; rebuilding from Redis", path)
        return None
    return snap
