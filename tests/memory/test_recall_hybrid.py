"""Recall's keyword side, occurred_at and time-aware matching, through a real MCP client session."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_gemma import native

from .conftest import MakeSettings, OpenClient, contents, fails, ok

pytestmark = pytest.mark.anyio

TURNS = [
    ("Maya: we finally moved into the flat on Cobden Street", "2026-03-07T10:00:00Z"),
    ("Tom: my sister adopted a greyhound called Biscuit", "2026-03-20T18:00:00Z"),
    ("Maya: the boiler broke again and the landlord sent a plumber", "2026-04-11T09:30:00Z"),
    ("Tom: I ran my first half marathon in two hours five", "2026-04-26T12:00:00Z"),
    ("Maya: started the new job at the library on Monday", "2026-05-04T08:00:00Z"),
]


async def _store(client: object, agent: str = "chat") -> list[str]:
    report = await ok(
        client,  # type: ignore[arg-type]
        "store_memory",
        content=[t for t, _ in TURNS],
        occurred_at=[at for _, at in TURNS],
        tier="episodic",
        agent_id=agent,
    )
    return list(report["ids"])


async def test_occurred_at_is_stored_and_returned(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    async with open_client(make_settings()) as client:
        ids = await _store(client)
        res = await ok(client, "recall_memory", query="greyhound Biscuit", agent_id="chat", limit=1)
        hit = res["hits"][0]
        assert hit["item"]["id"] == ids[1]
        assert hit["item"]["occurred_at"] == "2026-03-20T18:00:00Z"
        assert hit["item"]["created_at"] != hit["item"]["occurred_at"]
        one = await ok(client, "store_memory", content="no date here", agent_id="chat", tier="episodic")
        got = await ok(client, "recall_memory", query="no date here", agent_id="chat", limit=1)
        assert got["hits"][0]["item"]["id"] == one["ids"][0]
        assert got["hits"][0]["item"]["occurred_at"] is None
        msg = await fails(
            client, "store_memory", content=["a", "b"], occurred_at=["2026-01-01T00:00:00Z"], agent_id="chat"
        )
        assert "occurred_at has 1 values for 2 contents" in msg


async def test_keyword_side_finds_an_exact_rare_word(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    async with open_client(make_settings()) as client:
        await _store(client)
        res = await ok(client, "recall_memory", query="Cobden", agent_id="chat", limit=5, match="keyword")
        assert [h["item"]["content"] for h in res["hits"]] == [TURNS[0][0]]
        hit = res["hits"][0]
        assert hit["keyword_score"] is not None and hit["keyword_score"] > 0
        assert "keywords" in hit["why"] and hit["why"].startswith("similarity")
        hybrid = await ok(client, "recall_memory", query="Cobden", agent_id="chat", limit=1)
        assert hybrid["hits"][0]["item"]["content"] == TURNS[0][0]
        vector = await ok(client, "recall_memory", query="Cobden", agent_id="chat", limit=5, match="vector")
        assert all(h["keyword_score"] is None or "keywords" not in h["why"] for h in vector["hits"])


async def test_time_named_in_the_query_favours_what_happened_then(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    async with open_client(make_settings(time_match_boost=0.5)) as client:
        await _store(client)
        query = "what did Maya say in April?"
        res = await ok(client, "recall_memory", query=query, agent_id="chat", limit=2)
        assert res["hits"][0]["item"]["content"] == TURNS[2][0]
        assert [h["time_match"] for h in res["hits"]] == [True, True]
        assert "in the asked time" in res["hits"][0]["why"]
        off = await ok(client, "recall_memory", query=query, agent_id="chat", limit=5, time_aware=False)
        assert not any(h["time_match"] for h in off["hits"])


async def test_occurred_filters(make_settings: MakeSettings, open_client: OpenClient) -> None:
    async with open_client(make_settings()) as client:
        await _store(client)
        got = await contents(
            client,
            "news",
            agent_id="chat",
            limit=10,
            occurred_after="2026-04-01T00:00:00Z",
            occurred_before="2026-04-30T23:59:59Z",
        )
        assert sorted(got) == sorted([TURNS[2][0], TURNS[3][0]])


@pytest.mark.parametrize("fusion", ["adaptive", "coverage"])
async def test_memory_fusion_setting_sets_the_keyword_evidence(
    make_settings: MakeSettings, open_client: OpenClient, fusion: str
) -> None:
    """keyword_score is BM25 / bound ('adaptive') or its mean with the memory's share of the query's
    IDF mass ('coverage'), recomputed from a BM25 index over the same five turns."""
    query = "Maya boiler landlord plumber"
    ref = native.BM25Index(analyzer="english")
    ref.add_many(list(range(len(TURNS))), [t for t, _ in TURNS])
    keys = np.arange(len(TURNS), dtype=np.uint64)
    scaled = ref.scores(query, keys) / ref.max_score(query)
    cover = ref.coverage_many(query, keys)
    want = {TURNS[i][0]: (cover[i] + scaled[i]) / 2 if fusion == "coverage" else scaled[i] for i in range(5)}
    async with open_client(make_settings(fusion=fusion)) as client:
        await _store(client)
        res = await ok(client, "recall_memory", query=query, agent_id="chat", limit=5)
    hits = res["hits"]
    assert hits[0]["item"]["content"] == TURNS[2][0]  # every term: coverage 1, so the BM25 share is 1
    assert cover[2] == 1.0 and 0.0 < cover[0] < 1.0
    for hit in hits:
        expected = want[hit["item"]["content"]]
        if expected == 0.0:
            assert hit["keyword_score"] is None
            continue
        assert hit["keyword_score"] == pytest.approx(expected, abs=2e-6)
        assert hit["similarity"] == pytest.approx(expected, abs=2e-6)  # weight 1: keywords only
