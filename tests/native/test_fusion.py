"""fuse_rrf and fuse_weighted."""

from __future__ import annotations

import pytest

from mcp_gemma import _rust_core as rc


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = rc.fuse_rrf([[1, 2, 3], [3, 1]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2][1] == pytest.approx(1 / 62)
    top2 = rc.fuse_rrf([[4, 5, 6]], limit=2)
    assert [i for i, _ in top2] == [4, 5]
    assert [s for _, s in top2] == pytest.approx([1 / 61, 1 / 62])
    assert rc.fuse_rrf([]) == []


def test_weighted_min_max_normalises_each_list() -> None:
    fused = rc.fuse_weighted([(1, 10.0), (2, 0.0)], [(2, 0.9), (3, 0.1)], 0.25)
    assert [i for i, _ in fused] == [1, 2, 3]
    assert [s for _, s in fused] == pytest.approx([0.75, 0.25, 0.0])
    only_b = rc.fuse_weighted([(1, 3.0)], [(2, 1.0), (3, 0.0)], 1.0)
    assert next(i for i, _ in only_b) == 2


def test_weighted_rejects_bad_weight() -> None:
    with pytest.raises(ValueError, match="weight_b"):
        rc.fuse_weighted([], [], 1.5)
    with pytest.raises(ValueError, match="not finite"):
        rc.fuse_weighted([(1, float("nan"))], [], 0.5)
