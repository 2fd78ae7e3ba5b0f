"""Hybrid fusion arithmetic (mcp_gemma.fusion): exact values."""

from __future__ import annotations

import pytest

from mcp_gemma.fusion import (
    COVERAGE_SHARE,
    LONG_DOCUMENT_DAMPING,
    LONG_DOCUMENT_QUERY_TERMS,
    NOT_A_PIECE_FACTOR,
    PIECE_GAP,
    SHORT_QUERY_TERMS,
    adaptive_weight,
    fuse_scores,
    is_piece_of,
)


def test_adaptive_weight_follows_coverage_and_shrinks_for_short_queries() -> None:
    assert SHORT_QUERY_TERMS == 3
    assert adaptive_weight(1.0, 12) == 1.0
    assert adaptive_weight(0.25, 12) == 0.25
    assert adaptive_weight(0.9, 1) == pytest.approx(0.3)
    assert adaptive_weight(0.9, 2) == pytest.approx(0.6)
    assert adaptive_weight(1.5, 5) == 1.0  # clipped
    assert adaptive_weight(-0.2, 5) == 0.0
    assert adaptive_weight(0.7, 0) == 0.0  # no term at all: meaning only


def test_adaptive_weight_gives_short_queries_less_keyword_share_over_long_documents() -> None:
    assert (LONG_DOCUMENT_QUERY_TERMS, LONG_DOCUMENT_DAMPING) == (4, 0.05)
    # 10 chunks per document: a query of at most 4 terms gets the share / (1 + 0.05 * 9)
    assert adaptive_weight(1.0, 3, 10.0) == pytest.approx(1.0 / 1.45)
    assert adaptive_weight(0.9, 2, 10.0) == pytest.approx(0.6 / 1.45)
    assert adaptive_weight(1.0, 4, 3.0) == pytest.approx(1.0 / 1.1)
    # longer queries, one chunk per document (memories) and fewer than one are unchanged
    assert adaptive_weight(1.0, 5, 10.0) == 1.0
    assert adaptive_weight(1.0, 3, 1.0) == 1.0
    assert adaptive_weight(0.5, 3, 0.5) == 0.5
    assert adaptive_weight(1.0, 3) == 1.0


def test_adaptive_weight_gives_short_queries_that_are_not_a_piece_of_the_hit_less_keyword_share() -> None:
    assert (NOT_A_PIECE_FACTOR, PIECE_GAP) == (0.6, 5)
    assert adaptive_weight(1.0, 3, 1.0, piece_of_text=False) == pytest.approx(0.6)
    assert adaptive_weight(0.5, 4, 1.0, piece_of_text=False) == pytest.approx(0.3)
    # with the long-document factor: both
    assert adaptive_weight(1.0, 3, 10.0, piece_of_text=False) == pytest.approx(0.6 / 1.45)
    # longer queries keep their share; no term: none
    assert adaptive_weight(1.0, 5, 1.0, piece_of_text=False) == 1.0
    assert adaptive_weight(1.0, 0, 1.0, piece_of_text=False) == 0.0
    assert adaptive_weight(1.0, 3, 1.0, piece_of_text=True) == 1.0


def test_is_piece_of_wants_every_query_token_in_order_within_the_gap() -> None:
    text = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    assert is_piece_of(["quick", "fox", "lazy"], text)  # gaps 2 and 4
    assert is_piece_of(["the", "lazy", "dog"], text)  # the second "the" starts it
    assert not is_piece_of(["fox", "quick"], text)  # out of order
    assert not is_piece_of(["quick", "cat"], text)  # a token the text lacks
    assert not is_piece_of(["quick", "dog"], text)  # 7 apart
    assert is_piece_of(["quick", "dog"], text, gap=7)
    assert is_piece_of(["fox"], text)
    assert not is_piece_of([], text) and not is_piece_of(["fox"], [])
    assert is_piece_of(["a", "a"], ["a", "b", "a"]) and not is_piece_of(["a", "a"], ["a"])


def test_fuse_scores_uses_the_bound_and_breaks_ties_by_id() -> None:
    got = fuse_scores([7, 3, 5], [0.5, 0.9, 0.5], [4.0, 0.0, 4.0], 8.0, 0.5)
    assert [i for i, _ in got] == [5, 7, 3]
    assert got[0][1] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert got[2][1] == pytest.approx(0.45)
    assert fuse_scores([1, 2], [0.2, 0.1], [0.0, 3.0], 0.0, 0.7)[0][0] == 1  # no bound: cosine only
    assert fuse_scores([], [], [], 1.0, 0.5) == []


def test_coverage_fusion_blends_each_candidates_coverage_into_the_keyword_side() -> None:
    assert COVERAGE_SHARE == 0.5
    # keyword = 0.5 coverage + 0.5 bm25 / bound; fused = (1 - w) cos + w keyword, w = 0.6
    got = fuse_scores([4, 9, 2], [0.3, 0.5, 0.4], [6.0, 2.0, 0.0], 8.0, 0.6, coverage=[0.5, 1.0, 0.0])
    want = {
        4: 0.4 * 0.3 + 0.6 * (0.5 * 0.5 + 0.5 * 0.75),  # 0.495
        9: 0.4 * 0.5 + 0.6 * (0.5 * 1.0 + 0.5 * 0.25),  # 0.575
        2: 0.4 * 0.4,  # 0.16
    }
    assert [i for i, _ in got] == [9, 4, 2]
    for i, score in got:
        assert score == pytest.approx(want[i], abs=1e-12)
    # without coverage the short chunk with the higher BM25 wins: the coverage half is what turns it
    assert [i for i, _ in fuse_scores([4, 9, 2], [0.3, 0.5, 0.4], [6.0, 2.0, 0.0], 8.0, 0.6)] == [4, 9, 2]
    # no bound (no query term indexed): coverage still counts, BM25 not
    alone = fuse_scores([1], [0.2], [0.0], 0.0, 0.5, coverage=[0.4])
    assert alone[0][1] == pytest.approx(0.5 * 0.2 + 0.5 * 0.2)
    with pytest.raises(ValueError, match="2 coverages for 3 candidates"):
        fuse_scores([1, 2, 3], [0.1] * 3, [0.0] * 3, 1.0, 0.5, coverage=[0.1, 0.2])
