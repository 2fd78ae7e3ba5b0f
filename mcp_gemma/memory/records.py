"""One memory as it lives in a Redis hash, and the conversions to and from it."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np

from mcp_gemma.embeddings.base import Vectors
from mcp_gemma.memory.config import TIER_NAMES, TierName
from mcp_gemma.memory.models import MemoryItem, Provenance

SHARED_AGENT = "shared"
# Every field but the embedding: what a recall or a listing reads back.
META_FIELDS = (
    "content",
    "tier",
    "agent",
    "session",
    "importance",
    "tags",
    "created",
    "accessed",
    "count",
    "expires",
    "source",
    "provenance",
    "occurred",
)


def new_key() -> int:
    """A random 63-bit key: the memory's id in the vector index (its hex form is the public id)."""
    return secrets.randbits(63) or 1


def key_to_id(key: int) -> str:
    """The public id of an index key."""
    return f"{key:016x}"


def id_to_key(memory_id: str) -> int | None:
    """The index key of a public id, or None when the id is malformed."""
    if len(memory_id) != 16:
        return None
    try:
        return int(memory_id, 16)
    except ValueError:
        return None


def as_text(value: bytes | str | object) -> str:
    """A Redis reply (bytes with this client) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


@overload
def ts(value: float) -> datetime: ...
@overload
def ts(value: None) -> None: ...
@overload
def ts(value: float | None) -> datetime | None: ...
def ts(value: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


@dataclass
class MemoryRecord:
    """A memory with every field, including its embedding."""

    key: int
    tier: TierName
    content: str
    importance: float
    tags: tuple[str, ...]
    agent: str
    session: str | None
    created: float
    accessed: float
    count: int
    expires: float | None
    source: str = "stored"
    provenance: list[dict[str, object]] = field(default_factory=list)
    embedding: Vectors | None = None
    occurred: float | None = None  # when what it records happened (set by the writer), epoch seconds

    @property
    def id(self) -> str:
        """The public id."""
        return key_to_id(self.key)

    def to_hash(self) -> dict[str, bytes | str | float | int]:
        """The Redis hash mapping (embedding as raw float32 bytes)."""
        data: dict[str, bytes | str | float | int] = {
            "content": self.content,
            "tier": self.tier,
            "agent": self.agent,
            "session": self.session or "",
            "importance": repr(self.importance),
            "tags": json.dumps(list(self.tags)),
            "created": repr(self.created),
            "accessed": repr(self.accessed),
            "count": self.count,
            "expires": "" if self.expires is None else repr(self.expires),
            "source": self.source,
            "provenance": json.dumps(self.provenance),
            "occurred": "" if self.occurred is None else repr(self.occurred),
        }
        if self.embedding is not None:
            data["embedding"] = np.ascontiguousarray(self.embedding, dtype=np.float32).tobytes()
        return data

    @classmethod
    def from_fields(cls, key: int, values: dict[str, Any]) -> MemoryRecord | None:
        """Rebuild from a hash read back (bytes values); None when the hash is gone or damaged."""
        content = values.get("content")
        tier = (values.get("tier") or b"").decode()
        if content is None or tier not in TIER_NAMES:
            return None
        session = (values.get("session") or b"").decode() or None
        expires_raw = (values.get("expires") or b"").decode()
        occurred_raw = (values.get("occurred") or b"").decode()
        emb = values.get("embedding")
        return cls(
            key=key,
            tier=tier,  # checked against TIER_NAMES above
            content=content.decode(),
            importance=float(values.get("importance") or b"0"),
            tags=tuple(json.loads(values.get("tags") or b"[]")),
            agent=(values.get("agent") or b"").decode(),
            session=session,
            created=float(values.get("created") or b"0"),
            accessed=float(values.get("accessed") or b"0"),
            count=int(values.get("count") or b"1"),
            expires=float(expires_raw) if expires_raw else None,
            source=(values.get("source") or b"stored").decode(),
            provenance=json.loads(values.get("provenance") or b"[]"),
            embedding=np.frombuffer(emb, dtype=np.float32).copy() if emb else None,
            occurred=float(occurred_raw) if occurred_raw else None,
        )

    def to_item(self) -> MemoryItem:
        """The public view (no embedding)."""
        return MemoryItem(
            id=self.id,
            tier=self.tier,
            content=self.content,
            importance=self.importance,
            tags=list(self.tags),
            agent_id=self.agent,
            session_id=self.session,
            created_at=ts(self.created),
            accessed_at=ts(self.accessed),
            access_count=max(self.count, 1),
            expires_at=ts(self.expires),
            occurred_at=ts(self.occurred),
            source=self.source,
            provenance=[Provenance.model_validate(p) for p in self.provenance],
        )

    def to_cache_bytes(self) -> bytes:
        """The working-tier cache value: the hash fields as JSON, without the embedding."""
        data = {k: v for k, v in self.to_hash().items() if k != "embedding"}
        return json.dumps(data).encode()

    @classmethod
    def from_cache_bytes(cls, key: int, raw: bytes) -> MemoryRecord | None:
        """Inverse of :meth:`to_cache_bytes`."""
        data = json.loads(raw)
        return cls.from_fields(key, {k: str(v).encode() for k, v in data.items()})

    def evolve(self, **changes: object) -> MemoryRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]
