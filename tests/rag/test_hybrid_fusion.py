"""hybrid_search's fusion and group_by_document on the search tools, through a real MCP client session."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcp import Client

from mcp_gemma import native
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

pytestmark = pytest.mark.anyio

LONG = (
    "Redis streams keep an append-only log of entries. "
    "Consumer groups let several readers share one stream. "
    "Each entry has an id made of a time and a sequence number. "
    "Trimming keeps the stream from growing without bound."
)
DOCS = [
    {"id": "streams", "text": LONG},
    {"id": "sets", "text": "Sorted sets keep members ordered by score for leaderboards."},
    {"id": "lists", "text": "Lists are linked lists of strings, good for simple queues."},
]


@pytest.fixture
def small_chunks(tmp_path: Path, redis_url: str, namespace: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        namespace=namespace,
        rag={"chunk_size": 60, "chunk_overlap": 0},
    )


async def _ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    res = await client.call_tool(tool, args)
    assert res.is_error is False, res.content
    assert res.structured_content is not None
    return res.structured_content


async def test_group_by_document_returns_best_chunk_per_document(small_chunks: Settings) -> None:
    async with Client(create_server(small_chunks)) as client:
        await _ok(client, "batch_ingest", documents=DOCS)
        doc = await _ok(client, "get_document", id="streams", include_chunks=True)
        spans = [(c["chunk_id"], c["start"], c["end"]) for c in doc["chunk_list"]]
        assert len(spans) == 4
        for tool in ("search_documents", "hybrid_search"):
            flat = await _ok(client, tool, query="stream entries consumer groups", limit=3)
            assert [h["doc_id"] for h in flat["hits"]].count("streams") >= 2
            grouped = await _ok(
                client, tool, query="stream entries consumer groups", limit=3, group_by_document=True
            )
            hits = grouped["hits"]
            assert sorted(h["doc_id"] for h in hits) == ["lists", "sets", "streams"]
            top = hits[0]
            assert top["doc_id"] == "streams" and top["document_matches"] == 4
            pos = [s[0] for s in spans].index(top["chunk_id"])
            want = [s for i, s in enumerate(spans) if i in (pos - 1, pos + 1)]
            assert [(n["chunk_id"], n["start"], n["end"]) for n in top["neighbours"]] == want
            assert flat["hits"][0]["neighbours"] is None
        sem = await _ok(
            client, "semantic_search", query="stream consumer groups", limit=3, group_by_document=True
        )
        assert sorted(p["doc_id"] for p in sem["passages"]) == ["lists", "sets", "streams"]


async def test_hybrid_reports_fusion_and_weight(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        await _ok(client, "batch_ingest", documents=DOCS)
        res = await _ok(client, "hybrid_search", query="Sorted sets keep members ordered by score", limit=2)
        assert res["fusion"] == "adaptive"
        assert res["keyword_weight"] == 1.0  # the whole query is in the 'sets' document
        assert res["hits"][0]["doc_id"] == "sets"
        top = res["hits"][0]
        assert top["vector_score"] is not None and top["keyword_score"] is not None
        cov = await _ok(
            client, "hybrid_search", query="Sorted sets keep members ordered by score", fusion="coverage"
        )
        assert (cov["fusion"], cov["keyword_weight"]) == ("coverage", 1.0)
        fixed = await _ok(client, "hybrid_search", query="leaderboards", keyword_weight=0.25, limit=1)
        assert (fixed["fusion"], fixed["keyword_weight"]) == ("weighted", 0.25)
        rrf = await _ok(client, "hybrid_search", query="leaderboards", fusion="rrf", limit=1)
        assert (rrf["fusion"], rrf["keyword_weight"]) == ("rrf", None)
        for other in ("rrf", "coverage", "adaptive"):
            args = {"query": "x", "keyword_weight": 0.5, "fusion": other}
            bad = await client.call_tool("hybrid_search", args)
            assert bad.is_error is True
            assert "keyword_weight applies to fusion='weighted' only" in str(bad.content[0].text)  # type: ignore[union-attr]


async def test_coverage_fusion_scores_half_coverage_half_bounded_bm25(settings: Settings) -> None:
    """The fused score of fusion="coverage", recomputed by hand from a BM25 index over the same texts (one
    chunk per document): ``(1 - w) · cosine + w · (coverage / 2 + bm25 / bound / 2)``."""
    query = "sorted lists of strings"
    rag = settings.rag
    ref = native.BM25Index(rag.bm25_k1, rag.bm25_b, rag.bm25_analyzer)
    ref.add_many([0, 1, 2], [d["text"] for d in DOCS])
    bound = ref.max_score(query)
    # terms sorted, lists, of, strings; N = 3: 'sets' holds sorted (df 1), 'lists' holds the other three
    df = {"sorted": 1, "lists": 1, "of": 2, "strings": 1}
    idf = {t: math.log(1 + (3 - n + 0.5) / (n + 0.5)) for t, n in df.items()}
    mass = sum(idf.values())
    cover = {"sets": idf["sorted"] / mass, "lists": 1 - idf["sorted"] / mass, "streams": idf["of"] / mass}
    np.testing.assert_allclose(
        ref.coverage_many(query, np.array([1, 2, 0], dtype=np.uint64)),
        [cover["sets"], cover["lists"], cover["streams"]],
        rtol=1e-12,
    )
    # the best BM25 hit is 'lists'; a query of 4 terms that is not a piece of its text ('sorted' is not
    # in it) gets 0.6 of the share
    w = cover["lists"] * min(1.0, 4 / 3) * 0.6
    async with Client(create_server(settings)) as client:
        await _ok(client, "batch_ingest", documents=DOCS)
        res = await _ok(client, "hybrid_search", query=query, limit=3, fusion="coverage")
    assert res["fusion"] == "coverage"
    assert res["keyword_weight"] == pytest.approx(w, abs=1e-4)  # rounded to 4 places in the result
    assert res["hits"][0]["doc_id"] == "lists"
    for hit in res["hits"]:
        bm = hit["keyword_score"] or 0.0
        want = (1 - w) * hit["vector_score"] + w * (cover[hit["doc_id"]] / 2 + bm / bound / 2)
        assert hit["score"] == pytest.approx(want, abs=1e-5), hit


async def test_short_queries_get_less_keyword_share_over_long_documents(small_chunks: Settings) -> None:
    """The adaptive BM25 share of a query of at most 4 terms is divided by 1 + 0.05 (chunks per document
    - 1) of the whole index, and multiplied by 0.6 when the query is not a piece of its best keyword
    hit's text (mcp_gemma.fusion); longer queries keep it."""
    async with Client(create_server(small_chunks)) as client:
        await _ok(client, "batch_ingest", documents=DOCS)  # 4 + 1 + 1 chunks over 3 documents
        # "leaderboards" is 7 tokens after "sets" in "Sorted sets keep members ordered by score for
        # leaderboards.": words about the text, not a piece of it
        words = await _ok(client, "hybrid_search", query="sorted sets leaderboards", limit=1)
        assert words["keyword_weight"] == round(0.6 / (1 + 0.05 * (6 / 3 - 1)), 4)  # 0.5714
        assert words["hits"][0]["doc_id"] == "sets"
        piece = await _ok(client, "hybrid_search", query="members ordered by score", limit=1)
        assert piece["keyword_weight"] == round(1.0 / (1 + 0.05 * (6 / 3 - 1)), 4)  # 0.9524
        assert piece["hits"][0]["doc_id"] == "sets"
        longer = await _ok(client, "hybrid_search", query="sorted sets keep members ordered", limit=1)
        assert longer["keyword_weight"] == 1.0
        await _ok(client, "delete_document", id="streams")  # one chunk per document left
        again = await _ok(client, "hybrid_search", query="sorted sets leaderboards", limit=1)
        assert again["keyword_weight"] == 0.6
        again = await _ok(client, "hybrid_search", query="members ordered by score", limit=1)
        assert again["keyword_weight"] == 1.0


async def test_the_quality_harness_predicts_the_servers_chunk_ids(small_chunks: Settings) -> None:
    """benches/quality/offline.py breaks ties between equal scores by the chunk id the server hands out
    when a corpus is ingested in order (offline.server_ids), so that tune.py ranks exactly as
    hybrid_search does; the ids read back through get_document are those."""
    from benches.quality.offline import server_ids

    docs = [*DOCS, {"id": "hashes", "text": LONG + " Hashes map fields to values."}]
    async with Client(create_server(small_chunks)) as client:
        report = await _ok(client, "batch_ingest", documents=docs[:2])
        assert report["failed"] == []
        await _ok(client, "batch_ingest", documents=docs[2:])  # a second batch continues the counters
        chunk_doc: list[str] = []
        got: list[int] = []
        for doc in docs:
            record = await _ok(client, "get_document", id=doc["id"], include_text=False, include_chunks=True)
            chunks = sorted(record["chunk_list"], key=lambda c: c["ordinal"])
            chunk_doc += [doc["id"]] * len(chunks)
            got += [c["chunk_id"] for c in chunks]
    assert len(got) > len(docs)  # some documents have several chunks
    assert server_ids(chunk_doc).tolist() == got


async def test_hybrid_reads_its_best_keyword_chunk_once(small_chunks: Settings) -> None:
    """A short query's piece test reads its best keyword hit's chunk; when that chunk is also a hit,
    the hits reuse it instead of reading it again (Redis's own HMGET count, around one MCP call)."""
    import redis.asyncio as aioredis

    assert small_chunks.redis_url is not None
    redis = aioredis.from_url(small_chunks.redis_url.get_secret_value())

    async def hmgets() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    try:
        async with Client(create_server(small_chunks)) as client:
            await _ok(client, "batch_ingest", documents=DOCS)
            await _ok(client, "hybrid_search", query="sorted sets leaderboards", limit=1)  # warm
            before = await hmgets()
            res = await _ok(client, "hybrid_search", query="sorted sets leaderboards", limit=1)
            assert await hmgets() - before == 1  # the piece test's read, reused by the one hit
            assert res["hits"][0]["doc_id"] == "sets"
            assert res["hits"][0]["text"] == DOCS[1]["text"]
            before = await hmgets()
            res = await _ok(client, "hybrid_search", query="sorted sets leaderboards", limit=3)
            assert await hmgets() - before == 3  # the best chunk once, the two other hits once each
            assert len(res["hits"]) == 3 and res["hits"][0]["doc_id"] == "sets"
            before = await hmgets()
            await _ok(client, "semantic_search", query="sorted sets leaderboards", limit=1, context_chunks=0)
            assert await hmgets() - before == 1
    finally:
        await redis.aclose()
