"""Every Redis key name, in one place.

The data of a namespace is spread over :data:`SLOT_GROUPS` slot groups, each a hash tag of its own,
so that on Redis Cluster it spreads over every master while each multi-key transaction stays in
one slot:

* a document's keys (its hash and its chunks) live in the group of its id, and so do the group's
  document listing, chunk-id counter and change stream (one stream per group, which every
  replica follows);
* a memory scope's keys (its memories, tiers, statistics, version counter) live in the group of the
  scope.

Group tags are chosen so their slots are evenly spaced over the 16384 slots (group ``i`` hashes to
a slot in ``[i * 256, (i + 1) * 256)``), so any cluster whose masters own contiguous, even slot
ranges holds an even share of the groups. Chunk ids carry their group in their low bits
(``chunk_id % SLOT_GROUPS``), so a chunk's key follows from its id alone.

A few keys stay under the namespace tag ``{ns}``: metadata (the layout version) and small server
state. :class:`LegacyKeys` names the single-tag layout of before (layout 1), which
:mod:`mcp_gemma.store.migrate` moves to this one.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SLOT_GROUPS = 64
LAYOUT_VERSION = 2


def group_of(name: str) -> int:
    """The slot group of a document id or memory scope (stable across processes and versions)."""
    return zlib.crc32(name.encode()) % SLOT_GROUPS


def chunk_group(chunk_id: int) -> int:
    """The slot group a chunk id was handed out in."""
    return chunk_id % SLOT_GROUPS


@functools.lru_cache(maxsize=64)
def group_tags(namespace: str) -> tuple[str, ...]:
    """The hash tag of each slot group of ``namespace``, one per evenly spaced slot range."""
    width = REDIS_CLUSTER_HASH_SLOTS // SLOT_GROUPS
    tags: list[str] = []
    for group in range(SLOT_GROUPS):
        salt = 0
        while key_slot(f"{namespace}/{group}.{salt}".encode()) // width != group:
            salt += 1  # about SLOT_GROUPS tries on average: a few milliseconds per namespace
        tags.append(f"{{{namespace}/{group}.{salt}}}")
    return tuple(tags)


def one_slot_tags(namespace: str) -> tuple[str, ...]:
    """Group tags that all hash to one slot (the namespace's own): ``{ns}g0`` … ``{ns}g63``."""
    return tuple(f"{{{namespace}}}g{group}" for group in range(SLOT_GROUPS))


class Keys:
    """Key builders for one namespace.

    ``one_slot`` keeps every key of the namespace in one Redis Cluster slot (the slot groups still
    name separate keys and streams, but share the namespace's hash tag): a small collection a user
    wants kept together on one master. The default spreads the groups over every slot range.
    """

    def __init__(self, namespace: str, *, one_slot: bool = False) -> None:
        self.ns = namespace
        self.prefix = f"{{{namespace}}}"
        self.one_slot = one_slot
        self.tags = one_slot_tags(namespace) if one_slot else group_tags(namespace)

    @property
    def slot_mode(self) -> str:
        """``one`` or ``spread``: recorded in :meth:`meta` when the namespace is first written."""
        return "one" if self.one_slot else "spread"

    # ---- namespace-wide ------------------------------------------------------------------------

    def meta(self) -> str:
        """Hash of server metadata (``layout`` version)."""
        return f"{self.prefix}:meta"

    def kv(self, name: str) -> str:
        """A plain key for tests and small server state."""
        return f"{self.prefix}:kv:{name}"

    def change_epoch(self) -> str:
        """Counter bumped after every document change (after its transaction): a replica reads it
        to skip the 64 change streams when nothing changed."""
        return f"{self.prefix}:changes:epoch"

    def ingest_queue(self) -> str:
        """Hash of acknowledged one-document ingests not yet written (doc id -> JSON entry): what a
        process that stopped before writing them left, replayed by the next one to start."""
        return f"{self.prefix}:ingest:queued"

    def ingest_owner(self, owner: str) -> str:
        """Set (with a short expiry, refreshed) while process ``owner`` has queued ingests to write:
        another process waits for a live owner's entries and writes a dead one's itself."""
        return f"{self.prefix}:ingest:alive:{owner}"

    def migration_lock(self) -> str:
        """Held by the one process that migrates the layout."""
        return f"{self.prefix}:migrating"

    def tag(self, group: int) -> str:
        """The hash tag of one slot group."""
        return self.tags[group]

    # ---- documents (group of the document id) ---------------------------------------------------

    def doc(self, doc_id: str) -> str:
        """Hash of one document (text, metadata JSON, content hash, chunk ids)."""
        return f"{self.tags[group_of(doc_id)]}:doc:{doc_id}"

    def chunk(self, chunk_id: int) -> str:
        """Hash of one chunk (doc id, ordinal, text, offsets, embedding bytes)."""
        return f"{self.tags[chunk_group(chunk_id)]}:chunk:{chunk_id}"

    def docs(self, group: int) -> str:
        """Sorted set of the ids of one group's documents, by creation time."""
        return f"{self.tags[group]}:docs"

    def chunk_seq(self, group: int) -> str:
        """Counter that hands out one group's chunk ids (``n * SLOT_GROUPS + group``)."""
        return f"{self.tags[group]}:seq:chunk"

    def changes(self, group: int) -> str:
        """Stream of one group's document changes, which every replica's in-memory index follows."""
        return f"{self.tags[group]}:changes"

    # ---- memory (group of the scope) ------------------------------------------------------------

    def memory(self, scope: str, memory_id: str) -> str:
        """Hash of one memory of a scope."""
        return f"{self.tags[group_of(scope)]}:mem:{memory_id}"

    def memory_tier(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by creation time."""
        return f"{self.tags[group_of(scope)]}:memtier:{scope}:{tier}"

    def memory_stats(self, scope: str, tier: str) -> str:
        """Hash of hit/miss counters of one tier."""
        return f"{self.tags[group_of(scope)]}:memstats:{scope}:{tier}"

    def memory_rank(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by retention key (lowest is evicted first)."""
        return f"{self.tags[group_of(scope)]}:memrank:{scope}:{tier}"

    def memory_expiry(self, scope: str, tier: str) -> str:
        """Sorted set of memory ids of one tier in one scope, by expiry time (epoch seconds)."""
        return f"{self.tags[group_of(scope)]}:memexp:{scope}:{tier}"

    def memory_version(self, scope: str) -> str:
        """Counter bumped by every memory change in a scope, so replicas know to reload."""
        return f"{self.tags[group_of(scope)]}:memver:{scope}"

    def memory_scopes(self, group: int) -> str:
        """Set of the scopes (agent ids) of one group that hold memories."""
        return f"{self.tags[group]}:memscopes"

    def memory_scopes_of(self, scope: str) -> str:
        """:meth:`memory_scopes` of the group ``scope`` belongs to."""
        return self.memory_scopes(group_of(scope))


class LegacyKeys:
    """The layout-1 key names: everything of a namespace under the one hash tag ``{ns}``."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{{{namespace}}}"

    def doc(self, doc_id: str) -> str:
        """A document's hash."""
        return f"{self.prefix}:doc:{doc_id}"

    def docs(self) -> str:
        """The sorted set of every document id."""
        return f"{self.prefix}:docs"

    def chunk(self, chunk_id: int) -> str:
        """A chunk's hash."""
        return f"{self.prefix}:chunk:{chunk_id}"

    def chunk_seq(self) -> str:
        """The one chunk-id counter."""
        return f"{self.prefix}:seq:chunk"

    def changes(self) -> str:
        """The one change stream."""
        return f"{self.prefix}:changes"

    def memory(self, memory_id: str) -> str:
        """A memory's hash."""
        return f"{self.prefix}:mem:{memory_id}"

    def memory_scope_key(self, kind: str, scope: str, tier: str | None = None) -> str:
        """A per-scope key (``memtier``, ``memrank``, ``memexp``, ``memstats`` per tier; ``memver``)."""
        return f"{self.prefix}:{kind}:{scope}" + (f":{tier}" if tier is not None else "")

    def memory_scopes(self) -> str:
        """The set of every scope."""
        return f"{self.prefix}:memscopes"
