"""The memory index's int8 first pass (``memory.quantize``): switching with hysteresis, same winners."""

from __future__ import annotations

import numpy as np

from mcp_gemma.memory.config import MemorySettings, TierSettings
from mcp_gemma.memory.index import ScopeIndex
from mcp_gemma.memory.records import MemoryRecord, new_key


def _records(n: int, seed: int = 0) -> list[MemoryRecord]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        MemoryRecord(
            key=new_key(),
            tier="long_term",
            content=f"m{i}",
            importance=float(rng.uniform(0.05, 1.0)),
            tags=(),
            agent="a",
            session=None,
            created=1.0,
            accessed=1.0,
            count=1,
            expires=None,
            embedding=vecs[i],
        )
        for i in range(n)
    ]


def _index(quantize: bool | str, min_items: int = 10) -> ScopeIndex:
    return ScopeIndex("a", 32, TierSettings(capacity=10, ttl_s=None), 10, quantize, min_items)  # type: ignore[arg-type]


def test_auto_switches_on_at_the_threshold_and_off_below_half() -> None:
    idx = _index("auto")
    recs = _records(12)
    idx.put(recs[:9], 0.0)
    assert not idx.vectors.quantized
    idx.put(recs[9:10], 0.0)
    assert idx.vectors.quantized
    idx.drop(r.key for r in recs[:5])  # 5 left: at half the threshold it stays on
    assert idx.vectors.quantized
    idx.drop([recs[5].key])
    assert not idx.vectors.quantized


def test_explicit_settings_win() -> None:
    on, off = _index(True), _index(False, 1)
    recs = _records(3)
    on.put(recs, 0.0)
    off.put(recs, 0.0)
    assert on.vectors.quantized and not off.vectors.quantized


def test_int8_first_pass_finds_the_exact_winners() -> None:
    recs = _records(2_000, seed=1)
    exact, fast = _index(False), _index(True)
    exact.put(recs, 0.0)
    fast.put(recs, 0.0)
    rng = np.random.default_rng(2)
    allow = np.array([r.key for r in recs[::3]], dtype=np.uint64)
    for _ in range(20):
        q = rng.standard_normal(32).astype(np.float32)
        q /= np.linalg.norm(q)
        for flt in (None, allow):
            a, b = exact.search(q, 32, flt), fast.search(q, 32, flt)
            assert [k for k, _ in a] == [k for k, _ in b]
            assert np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)


def test_memory_settings_default_to_auto() -> None:
    s = MemorySettings()
    assert s.quantize == "auto" and s.quantize_min_items == 5_000
