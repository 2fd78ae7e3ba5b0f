"""Key helpers: one namespace, one hash tag."""

from __future__ import annotations

from mcp_gemma.store.keys import Keys


def test_every_key_carries_the_namespace_hash_tag() -> None:
    keys = Keys("ns1")
    built = [
        keys.meta(),
        keys.kv("a"),
        keys.doc("d"),
        keys.docs(),
        keys.chunk(3),
        keys.doc_chunks("d"),
        keys.chunk_seq(),
        keys.changes(),
        keys.memory("m"),
        keys.memory_tier("s", "working"),
    ]
    assert all(k.startswith("{ns1}:") for k in built)
    assert len(set(built)) == len(built)
