"""Key helpers: slot groups that keep each document / memory scope in one slot and spread the
namespace over every master of a cluster."""

from __future__ import annotations

from collections import Counter

from redis.crc import key_slot

from mcp_gemma.store.keys import SLOT_GROUPS, Keys, LegacyKeys, chunk_group, group_of, group_tags


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_every_key_is_distinct_and_carries_a_tag_of_the_namespace() -> None:
    keys = Keys("ns1")
    built = [
        keys.meta(),
        keys.kv("a"),
        keys.migration_lock(),
        keys.doc("d"),
        keys.docs(3),
        keys.chunk(3 * SLOT_GROUPS + 5),
        keys.chunk_seq(5),
        keys.changes(5),
        keys.memory("s", "m"),
        keys.memory_tier("s", "working"),
        keys.memory_rank("s", "working"),
        keys.memory_expiry("s", "working"),
        keys.memory_stats("s", "working"),
        keys.memory_version("s"),
        keys.memory_scopes(5),
    ]
    assert all(k.startswith(("{ns1}:", "{ns1/")) for k in built)
    assert len(set(built)) == len(built)
    assert Keys("ns2").doc("d") != keys.doc("d")


def test_group_tags_are_evenly_spaced_over_the_slots() -> None:
    tags = group_tags("mcpg")
    assert len(tags) == SLOT_GROUPS
    assert [slot(t) // (16384 // SLOT_GROUPS) for t in tags] == list(range(SLOT_GROUPS))


def test_a_document_and_its_group_state_share_one_slot() -> None:
    keys = Keys("mcpg")
    for doc_id in ("a", "report-2024.pdf", "ünïcode", "x" * 200):
        g = group_of(doc_id)
        chunk_ids = [seq * SLOT_GROUPS + g for seq in (1, 2, 999)]
        assert all(chunk_group(c) == g for c in chunk_ids)
        same = {
            slot(keys.doc(doc_id)),
            slot(keys.docs(g)),
            slot(keys.changes(g)),
            slot(keys.chunk_seq(g)),
            *(slot(keys.chunk(c)) for c in chunk_ids),
        }
        assert len(same) == 1


def test_a_memory_scope_shares_one_slot() -> None:
    keys = Keys("mcpg")
    for scope in ("default", "shared", "agent-7"):
        slots = {
            slot(keys.memory(scope, "00000000000000ff")),
            slot(keys.memory_version(scope)),
            slot(keys.memory_scopes_of(scope)),
            *(
                slot(f(scope, t))
                for t in ("working", "semantic")
                for f in (keys.memory_tier, keys.memory_rank, keys.memory_expiry, keys.memory_stats)
            ),
        }
        assert len(slots) == 1


def test_a_thousand_documents_spread_over_three_masters() -> None:
    # redis-cli --cluster create gives 3 masters the slot ranges 0-5460, 5461-10922, 10923-16383
    keys = Keys("mcpg")
    per_master = Counter(min(slot(keys.doc(f"doc-{i}")) // 5461, 2) for i in range(1000))
    assert set(per_master) == {0, 1, 2}
    assert max(per_master.values()) <= 1.5 * 1000 / 3, per_master
    old = LegacyKeys("mcpg")
    assert len({slot(old.doc(f"doc-{i}")) for i in range(1000)}) == 1  # what layout 1 did
