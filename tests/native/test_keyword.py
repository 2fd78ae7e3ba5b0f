"""BM25Index and tokenize."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcp_gemma import _rust_core as rc


def _bm25(tf: float, df: float, n: float, dl: float, avgdl: float, k1: float = 1.2, b: float = 0.75) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))


def test_tokenize_lowercases_unicode_words() -> None:
    assert rc.tokenize("Hello, WORLD! Grüße — 東京") == ["hello", "world", "grüße", "東", "京"]
    assert rc.tokenize("") == []


def test_scores_match_hand_computed_bm25() -> None:
    index = rc.BM25Index()
    index.add_many([1, 2, 3], ["the cat sat on the mat", "the dog sat", "cats and dogs"])
    avgdl = 12 / 3
    ids, scores = index.search("cat sat", 10)
    assert ids.tolist() == [1, 2]
    expected = [
        _bm25(1, 1, 3, 6, avgdl) + _bm25(1, 2, 3, 6, avgdl),
        _bm25(1, 2, 3, 3, avgdl),
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert index.vocab_size == 9
    assert len(index) == 3


def test_term_frequency_and_length_order_like_rank_bm25() -> None:
    index = rc.BM25Index(k1=1.5, b=0.75)
    index.add(10, "redis redis redis vector")
    index.add(11, "redis vector index with many other words in it")
    index.add(12, "nothing relevant here")
    ids, _ = index.search("redis", 5)
    assert ids.tolist() == [10, 11]
    assert index.k1 == pytest.approx(1.5)
    assert index.b == pytest.approx(0.75)


def test_upsert_remove_and_allow() -> None:
    index = rc.BM25Index()
    index.add(1, "alpha beta")
    index.add(2, "beta gamma")
    index.add(1, "delta")
    assert len(index) == 2
    assert index.search("alpha", 5)[0].tolist() == []
    ids, _ = index.search("beta delta", 5, allow=np.array([1], dtype=np.uint64))
    assert ids.tolist() == [1]
    assert index.remove(2)
    assert not index.remove(2)
    assert 2 not in index
    assert index.search("beta", 5)[0].tolist() == []


def test_bad_input() -> None:
    index = rc.BM25Index()
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search("x", 0)
    with pytest.raises(ValueError, match="ids but"):
        index.add_many([1, 2], ["only one"])
    with pytest.raises(ValueError, match="b must be"):
        rc.BM25Index(b=2.0)


def test_english_analyzer_stems_splits_identifiers_and_drops_stop_words() -> None:
    assert rc.tokenize("The files were Compressed", "english") == ["file", "compress"]
    assert rc.tokenize("read_lines", "english") == ["read_lin", "read", "line"]
    assert rc.tokenize("readLines", "english") == ["readlin", "read", "line"]
    with pytest.raises(ValueError, match="analyzer must be 'plain' or 'english'"):
        rc.tokenize("x", "klingon")
    with pytest.raises(ValueError, match="analyzer"):
        rc.BM25Index(analyzer="klingon")


def test_english_index_matches_other_word_forms() -> None:
    plain, english = rc.BM25Index(), rc.BM25Index(analyzer="english")
    for index in (plain, english):
        index.add_many([1, 2], ["compressing the files quickly", "a list of numbers"])
    assert plain.search("compressed file", 5)[0].tolist() == []
    assert english.search("compressed file", 5)[0].tolist() == [1]
    assert english.analyzer == "english" and plain.analyzer == "plain"
    assert 'analyzer="english"' in repr(english)


def test_scores_bound_and_coverage() -> None:
    index = rc.BM25Index()
    index.add_many([1, 2, 3], ["the cat sat on the mat", "the dog sat", "cats and dogs"])
    _, scores = index.search("cat sat", 10)
    got = index.scores("cat sat", np.array([2, 3, 1, 99], dtype=np.uint64))
    np.testing.assert_allclose(got, [scores[1], 0.0, scores[0], 0.0], rtol=1e-6)
    n = 3
    idf = [math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in (1, 2)]  # cat, sat
    assert index.max_score("cat sat") == pytest.approx(sum(idf) * 2.2, rel=1e-6)
    assert index.max_score("unheard") == 0.0
    assert index.coverage("cat sat", 1) == pytest.approx(1.0)
    assert index.coverage("cat sat", 2) == pytest.approx(idf[1] / sum(idf), rel=1e-6)
    unknown = math.log(1 + (n + 0.5) / 0.5)
    assert index.coverage("sat unheard", 2) == pytest.approx(idf[1] / (idf[1] + unknown), rel=1e-6)
    assert index.coverage("cat", 99) == 0.0
    assert index.coverage("cat", -1) == 0.0


def test_coverage_many_is_each_ids_share_of_the_query_idf_mass() -> None:
    index = rc.BM25Index()
    index.add_many([1, 2, 3, 4], ["the cat sat on the mat", "the dog sat", "cats and dogs", "cat"])
    index.remove(4)
    # N = 3 live documents: df(cat) = 1 (id 4 is gone), df(sat) = 2, df(the) = 2, df(unheard) = 0.
    # By hand: idf(1) = ln(1 + 2.5/1.5) = 0.98082925, idf(2) = ln(1 + 1.5/2.5) = 0.47000363,
    # idf(0) = ln(1 + 3.5/0.5) = 2.07944154; "the" and "sat" repeated count once.
    cat, two, unheard = 0.9808292530117263, 0.47000362924573563, 2.0794415416798357
    total = cat + two + two + unheard
    query = "The cat sat the sat unheard"
    got = index.coverage_many(query, np.array([2, 1, 99, 3, 4, 1], dtype=np.uint64))
    assert got.dtype == np.float64
    want = [(two + two) / total, (cat + two + two) / total, 0.0, 0.0, 0.0, (cat + two + two) / total]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)
    assert got[1] == pytest.approx(0.48017575, rel=1e-7)
    assert index.coverage(query, 1) == pytest.approx(got[1], rel=1e-6)  # the same share, in f32
    assert index.coverage_many("cat", np.array([1], dtype=np.uint64)).tolist() == [1.0]
    assert index.coverage_many("", np.array([1, 2], dtype=np.uint64)).tolist() == [0.0, 0.0]
    assert index.coverage_many("cat", np.array([], dtype=np.uint64)).tolist() == []
    assert rc.BM25Index().coverage_many("cat", np.array([1], dtype=np.uint64)).tolist() == [0.0]
    with pytest.raises(ValueError, match="ids"):
        index.coverage_many("cat", np.array([[1]], dtype=np.uint64))
