"""to_bytes / from_bytes of VectorIndex, BM25Index and HnswIndex from Python: a restored index
answers exactly as the one saved, and bytes that are truncated, foreign, of another version or
inconsistent are refused with a ValueError (InvalidInputError through native.py), never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from mcp_gemma import _rust_core as rc
from mcp_gemma import native
from mcp_gemma.errors import InvalidInputError

DIM = 24


def rows(n: int, seed: int) -> NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)


def ids(n: int, start: int = 0) -> NDArray[np.uint64]:
    return np.arange(start, start + n, dtype=np.uint64)


@pytest.mark.parametrize("quantize", [False, True])
def test_vector_index_round_trip(quantize: bool) -> None:
    idx = rc.VectorIndex(DIM, "cosine", quantize, 3)
    idx.add(ids(500), rows(500, 1))
    idx.remove(ids(50, 100))
    data = idx.to_bytes()
    back = rc.VectorIndex.from_bytes(b"prefix" + data + b"suffix", 6, 6 + len(data))
    assert (back.quantized, back.rerank, back.dim, len(back)) == (quantize, 3, DIM, 450)
    assert back.ids().tolist() == idx.ids().tolist()
    for q in rows(5, 2):
        got, want = back.search(q, 10), idx.search(q, 10)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert back.to_bytes() == data


def test_bm25_round_trip_keeps_scores_and_later_changes() -> None:
    idx = rc.BM25Index(1.3, 0.7, "english")
    idx.add_many([1, 2, 3, 4], ["Moon and tides", "Glaciers carve valleys", "the tides of the sea", ""])
    idx.remove(2)
    back = rc.BM25Index.from_bytes(idx.to_bytes())
    assert (back.analyzer, len(back), back.vocab_size) == ("english", 3, idx.vocab_size)
    assert back.k1 == idx.k1 and back.b == idx.b
    for q in ["tide", "sea moon", "valleys"]:
        got, want = back.search(q, 5), idx.search(q, 5)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
        assert back.max_score(q) == idx.max_score(q)
    for i in (idx, back):
        i.add(5, "valleys under the sea")
    assert back.search("sea", 5)[1].tolist() == idx.search("sea", 5)[1].tolist()


def test_hnsw_round_trip_walks_the_same_graph() -> None:
    idx = rc.HnswIndex(DIM, "cosine", m=6, ef_construction=40, seed=5, keep_rows=False)
    idx.add(ids(800), rows(800, 3))
    idx.remove(ids(20, 10))
    back = rc.HnswIndex.from_bytes(idx.to_bytes())
    assert (len(back), back.tombstones, back.m, back.ef_construction, back.keep_rows) == (
        780,
        20,
        6,
        40,
        False,
    )
    for q in rows(10, 4):
        assert back.candidates(q, 10, 30).tolist() == idx.candidates(q, 10, 30).tolist()


def test_corrupt_bytes_are_refused() -> None:
    vec = rc.VectorIndex(DIM)
    vec.add(ids(10), rows(10, 5))
    graph = rc.HnswIndex(DIM, keep_rows=False)
    graph.add(ids(10), rows(10, 5))
    bm25 = rc.BM25Index()
    bm25.add(1, "some words")
    for cls, data in (
        (rc.VectorIndex, vec.to_bytes()),
        (rc.HnswIndex, graph.to_bytes()),
        (rc.BM25Index, bm25.to_bytes()),
    ):
        with pytest.raises(ValueError, match="truncated"):
            cls.from_bytes(data[:-1])
        with pytest.raises(ValueError, match="format version 2; this build reads version 1"):
            cls.from_bytes(data[:8] + b"\x02" + data[9:])
        with pytest.raises(ValueError, match="not a saved"):
            cls.from_bytes(b"garbage bytes of no index")
        with pytest.raises(ValueError, match="trailing"):
            cls.from_bytes(data + b"\x00")
        with pytest.raises(ValueError, match="not within"):
            cls.from_bytes(data, 4, len(data) + 1)
        with pytest.raises(ValueError, match="data must be bytes"):
            cls.from_bytes(bytearray(data))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="saved VectorIndex"):
        rc.VectorIndex.from_bytes(graph.to_bytes())
    with pytest.raises(InvalidInputError, match="truncated"):
        native.HnswIndex.from_bytes(graph.to_bytes()[:100])


def test_an_out_of_range_neighbour_is_refused() -> None:
    graph = rc.HnswIndex(DIM, m=4, keep_rows=False)
    graph.add(ids(10), rows(10, 6))
    data = bytearray(graph.to_bytes())
    # layer 0 starts after the header (54 bytes), ids/tombstones/levels (10 each per node), the entry
    # point (13 bytes), codes (DIM per node) and scales (4 per node); its first slot is a count
    base = 54 + 10 * 10 + 13 + 10 * DIM + 10 * 4
    assert int.from_bytes(data[base : base + 4], "little") >= 1
    data[base + 4 : base + 8] = (10).to_bytes(4, "little")
    with pytest.raises(ValueError, match="links to 10 on layer 0, which is not there"):
        rc.HnswIndex.from_bytes(bytes(data))
