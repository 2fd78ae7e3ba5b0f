"""Hybrid fusion arithmetic (mcp_gemma.fusion): exact values."""

from __future__ import annotations

import pytest

from mcp_gemma.fusion import SHORT_QUERY_TERMS, adaptive_weight, fuse_scores


def test_adaptive_weight_follows_coverage_and_shrinks_for_short_queries() -> None:
    assert SHORT_QUERY_TERMS == 3
    assert adaptive_weight(1.0, 12) == 1.0
    assert adaptive_weight(0.25, 12) == 0.25
    assert adaptive_weight(0.9, 1) == pytest.approx(0.3)
    assert adaptive_weight(0.9, 2) == pytest.approx(0.6)
    assert adaptive_weight(1.5, 5) == 1.0  # clipped
    assert adaptive_weight(-0.2, 5) == 0.0
    assert adaptive_weight(0.7, 0) == 0.0  # no term at all: meaning only


def test_fuse_scores_uses_the_bound_and_breaks_ties_by_id() -> None:
    got = fuse_scores([7, 3, 5], [0.5, 0.9, 0.5], [4.0, 0.0, 4.0], 8.0, 0.5)
    assert [i for i, _ in got] == [5, 7, 3]
    assert got[0][1] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert got[2][1] == pytest.approx(0.45)
    assert fuse_scores([1, 2], [0.2, 0.1], [0.0, 3.0], 0.0, 0.7)[0][0] == 1  # no bound: cosine only
    assert fuse_scores([], [], [], 1.0, 0.5) == []
