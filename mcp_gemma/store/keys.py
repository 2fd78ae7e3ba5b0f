"""Every Redis key name, in one place.

Keys of one namespace share the hash tag ``{ns}`` so that multi-key transactions work on
Redis Cluster (all of a namespace lives in one slot).
"""

from __future__ import annotations


class Keys:
    """Key builders for one namespace."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.prefix = f"{{{namespace}}}"

    def meta(self) -> str:
        """Hash of server metadata (schema version, created at)."""
        return f"{self.prefix}:meta"

    def kv(self, name: str) -> str:
        """A plain key for tests and small server state."""
        return f"{self.prefix}:kv:{name}"

    def doc(self, doc_id: str) -> str:
        """Hash of one document (text, metadata JSON, content hash, chunk count)."""
        return f"{self.prefix}:doc:{doc_id}"

    def docs(self) -> str:
        """Sorted set of document ids by creation time."""
        return f"{self.prefix}:docs"

    def chunk(self, chunk_key: int) -> str:
        """Hash of one chunk (doc id, ordinal, text, offsets, embedding bytes)."""
        return f"{self.prefix}:chunk:{chunk_key}"

    def doc_chunks(self, doc_id: str) -> str:
        """List of the chunk keys of a document, in order."""
        return f"{self.prefix}:doc:{doc_id}:chunks"

    def chunk_seq(self) -> str:
        """Counter that hands out integer chunk keys."""
        return f"{self.prefix}:seq:chunk"

    def changes(self) -> str:
        """Stream of changes that keeps every replica's in-memory index in sync."""
        return f"{self.prefix}:changes"

    def memory(self, memory_id: str) -> str:
        """Hash of one memory item."""
        return f"{self.prefix}:mem:{memory_id}"

    def memory_tier(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by creation time."""
        return f"{self.prefix}:memtier:{scope}:{tier}"

    def memory_stats(self, scope: str, tier: str) -> str:
        """Hash of hit/miss counters of one tier."""
        return f"{self.prefix}:memstats:{scope}:{tier}"

    def memory_rank(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by retention key (lowest is evicted first)."""
        return f"{self.prefix}:memrank:{scope}:{tier}"

    def memory_expiry(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by expiry time (epoch seconds)."""
        return f"{self.prefix}:memexp:{scope}:{tier}"

    def memory_version(self, scope: str) -> str:
        """Counter bumped by every memory change in a scope, so replicas know to reload."""
        return f"{self.prefix}:memver:{scope}"

    def memory_scopes(self) -> str:
        """Set of the scopes (agent ids) that hold memories."""
        return f"{self.prefix}:memscopes"

    def embedding_cache(self, content_hash: str) -> str:
        """Cached embedding of a text, by content hash."""
        return f"{self.prefix}:emb:{content_hash}"
