"""TtlCache: LRU order, TTL, counters."""

from __future__ import annotations

import time

import pytest

from mcp_gemma import _rust_core as rc


def test_lru_eviction_and_stats() -> None:
    cache = rc.TtlCache(2)
    cache.set("a", b"1")
    cache.set("b", b"2")
    assert cache.get("a") == b"1"
    cache.set("c", b"3")
    assert cache.get("b") is None
    assert cache.keys() == ["c", "a"]
    assert len(cache) == 2
    assert cache.stats() == {"hits": 1, "misses": 1, "evictions": 1, "inserts": 3, "expirations": 0}
    assert cache.capacity == 2


def test_ttl_expiry_default_and_per_entry() -> None:
    cache = rc.TtlCache(10, ttl_seconds=0.15)
    cache.set("short", b"x")
    cache.set("long", b"y", ttl_seconds=30)
    assert cache.get("short") == b"x"
    time.sleep(0.3)
    assert cache.get("short") is None
    assert "short" not in cache
    assert cache.get("long") == b"y"
    assert len(cache) == 1
    assert cache.stats()["expirations"] == 1


def test_delete_clear_and_replace() -> None:
    cache = rc.TtlCache(3)
    cache.set("k", b"1")
    cache.set("k", b"2")
    assert len(cache) == 1
    assert cache.get("k") == b"2"
    assert cache.delete("k")
    assert not cache.delete("k")
    cache.set("x", b"")
    cache.clear()
    assert len(cache) == 0
    assert cache.keys() == []


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="capacity"):
        rc.TtlCache(0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        rc.TtlCache(1, ttl_seconds=-1)
    with pytest.raises(ValueError, match="ttl_seconds"):
        rc.TtlCache(1).set("a", b"x", ttl_seconds=float("nan"))
    with pytest.raises(TypeError):
        rc.TtlCache(1).set("a", "not bytes")  # type: ignore[arg-type]
