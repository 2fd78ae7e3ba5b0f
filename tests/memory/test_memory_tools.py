"""The memory tools through a real in-memory MCP client, on real Redis with real embeddings."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from mcp import MCPError

from .conftest import MakeSettings, OpenClient, contents, fails, ok, tier_stats

pytestmark = pytest.mark.anyio

FACTS = {
    "working": "The user is currently editing the file parser.py",
    "short_term": "The user asked about the weather in Lisbon",
    "long_term": "The user prefers answers in British English",
    "episodic": "In this session the user deployed version 2.1 to staging",
    "semantic": "Paris is the capital of France",
}


async def test_store_then_recall_within_and_across_tiers(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            ids = {}
            for tier, text in FACTS.items():
                report = await ok(client, "store_memory", content=text, tier=tier, importance=0.7, tags=["t"])
                assert report["tier"] == tier and report["tier_count"] == 1 and report["evicted"] == []
                assert (report["expires_at"] is None) == (tier == "semantic")
                ids[tier] = report["ids"][0]

            res = await ok(client, "recall_memory", query="What is the capital city of France?", limit=3)
            top = res["hits"][0]
            assert top["item"]["content"] == FACTS["semantic"]
            assert top["item"]["id"] == ids["semantic"]
            assert top["score"] == pytest.approx(top["similarity"] * 0.7 * top["recency"], rel=1e-6)
            assert "similarity" in top["why"] and "importance 0.70" in top["why"]
            assert res["candidates"] == 5 and set(res["tiers"]) == set(FACTS)

            # Within one tier: only that tier's memory can come back.
            only = await ok(client, "recall_memory", query="capital of France", tiers=["working"])
            assert [h["item"]["tier"] for h in only["hits"]] == ["working"]

            # Recalling counted as an access.
            again = await ok(client, "recall_memory", query="capital of France", tiers=["semantic"], limit=1)
            assert again["hits"][0]["item"]["access_count"] == 3


async def test_recall_filters_by_tags_session_and_time(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            await ok(
                client,
                "store_memory",
                content="Deploy failed on Monday",
                tags=["ops", "deploy"],
                session_id="s1",
            )
            await ok(
                client, "store_memory", content="Deploy succeeded on Tuesday", tags=["ops"], session_id="s2"
            )
            assert await contents(client, "deploy", tags=["deploy"]) == ["Deploy failed on Monday"]
            assert await contents(client, "deploy", session_id="s2") == ["Deploy succeeded on Tuesday"]
            future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
            past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
            assert await contents(client, "deploy", created_after=future) == []
            assert len(await contents(client, "deploy", created_after=past)) == 2
            assert await contents(client, "deploy", created_before=past) == []


async def test_ttl_expiry_forgets_unused_items(make_settings: MakeSettings, open_client: OpenClient) -> None:
    # Real Redis TTLs: 3 s leaves the checks before expiry 2.7 s on a loaded machine.
    settings = make_settings(tiers={"short_term": {"ttl_s": 3.0}, "working": {"ttl_s": 3.0}})
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            texts = [
                "The meeting room is B12",
                "The meeting starts at noon",
                "The meeting notes live in the wiki",
            ]
            for text in [
                "meeting room",
                "meeting",
                *texts,
            ]:  # embed now (cached by content): the rest is fast
                await ok(client, "recall_memory", query=text)
            await ok(client, "store_memory", content="The meeting room is B12", tier="short_term")
            await ok(client, "store_memory", content="The meeting starts at noon", tier="working")
            await ok(client, "store_memory", content="The meeting notes live in the wiki", tier="long_term")
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["expiring_within_ttl_10pct"] == 0
            assert await contents(client, "meeting room", tiers=["short_term"]) == ["The meeting room is B12"]
            await anyio.sleep(3.3)
            assert await contents(client, "meeting", tiers=["short_term", "working"]) == []
            assert await contents(client, "meeting", tiers=["long_term"]) == [
                "The meeting notes live in the wiki"
            ]
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["count"] == 0
            assert tier_stats(stats, "short_term")["expired"] == 1
            assert tier_stats(stats, "working")["expired"] == 1
            assert tier_stats(stats, "long_term")["count"] == 1


async def test_recall_refreshes_ttl(make_settings: MakeSettings, open_client: OpenClient) -> None:
    # The one test on real Redis TTLs: margins of 1.8 s each way, so a loaded machine's slow call
    # cannot decide it (the other TTL logic is tested with the expiry already due).
    settings = make_settings(tiers={"short_term": {"ttl_s": 5.0}})
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            for text in ("password hint", "The password hint is the dog's name"):  # embed now, cached after
                await ok(client, "recall_memory", query=text)
            await ok(client, "store_memory", content="The password hint is the dog's name")
            await anyio.sleep(3.2)
            assert len(await contents(client, "password hint")) == 1  # refreshes the sliding TTL
            await anyio.sleep(3.2)  # 6.4 s after the write, 3.2 s after the recall
            assert len(await contents(client, "password hint")) == 1


async def test_capacity_evicts_lowest_score_first(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    settings = make_settings(tiers={"short_term": {"capacity": 3}})
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            a = (await ok(client, "store_memory", content="alpha fact about rivers", importance=0.9))["ids"][
                0
            ]
            b = (await ok(client, "store_memory", content="beta fact about mountains", importance=0.2))[
                "ids"
            ][0]
            c = (await ok(client, "store_memory", content="gamma fact about forests", importance=0.5))["ids"][
                0
            ]
            # A recall doubles c's access count: 0.5 × 2 now outranks a fresh 0.6.
            assert (await contents(client, "forests", limit=1)) == ["gamma fact about forests"]
            d_report = await ok(client, "store_memory", content="delta fact about deserts", importance=0.6)
            assert [e["id"] for e in d_report["evicted"]] == [b]
            assert d_report["tier_count"] == 3
            e_report = await ok(client, "store_memory", content="epsilon fact about oceans", importance=0.7)
            assert [e["id"] for e in e_report["evicted"]] == [d_report["ids"][0]]
            left = await ok(client, "recall_memory", query="fact", limit=10)
            assert {h["item"]["id"] for h in left["hits"]} == {a, c, e_report["ids"][0]}
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["evicted"] == 2


async def test_working_tier_keeps_the_best_items_in_its_cache(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    settings = make_settings(tiers={"working": {"capacity": 3}})
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            for i, importance in enumerate([0.9, 0.1, 0.8, 0.2, 0.7]):
                await ok(
                    client,
                    "store_memory",
                    content=f"step {i} of the task",
                    tier="working",
                    importance=importance,
                )
            kept = await contents(client, "step of the task", tiers=["working"], limit=10)
            assert sorted(kept) == ["step 0 of the task", "step 2 of the task", "step 4 of the task"]
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "working")["count"] == 3
            assert tier_stats(stats, "working")["evicted"] == 2


async def test_promotion_after_repeated_recall(make_settings: MakeSettings, open_client: OpenClient) -> None:
    settings = make_settings(promote_after_accesses=2)
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            mid = (await ok(client, "store_memory", content="The user's cat is called Miso"))["ids"][0]
            first = await ok(client, "recall_memory", query="cat name", limit=1)
            assert first["hits"][0]["promoted_to"] is None
            second = await ok(client, "recall_memory", query="cat name", limit=1)
            assert second["hits"][0]["promoted_to"] == "long_term"
            now_long = await ok(client, "recall_memory", query="cat name", tiers=["long_term"], limit=1)
            assert now_long["hits"][0]["item"]["id"] == mid
            assert now_long["hits"][0]["item"]["tier"] == "long_term"
            assert await contents(client, "cat name", tiers=["short_term"]) == []
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["promoted"] == 1


async def test_important_items_promote_on_consolidation(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            mid = (await ok(client, "store_memory", content="Never deploy on Fridays", importance=0.95))[
                "ids"
            ][0]
            await ok(client, "store_memory", content="Lunch was pasta", importance=0.1)
            dry = await ok(client, "consolidate_memory", dry_run=True)
            assert [p["id"] for p in dry["promoted"]] == [mid]
            assert await contents(client, "deploy Fridays", tiers=["long_term"]) == []
            done = await ok(client, "consolidate_memory")
            assert [p["id"] for p in done["promoted"]] == [mid]
            assert await contents(client, "deploy Fridays", tiers=["long_term"]) == [
                "Never deploy on Fridays"
            ]


async def test_consolidation_merges_duplicates_and_keeps_provenance(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            store = "store_memory"
            keep = (
                await ok(
                    client,
                    store,
                    content="The office wifi password is tulip42",
                    tier="long_term",
                    importance=0.9,
                    tags=["wifi"],
                )
            )["ids"][0]
            dup1 = (
                await ok(
                    client,
                    store,
                    content="the office wifi password is tulip42.",
                    tier="long_term",
                    importance=0.4,
                    tags=["office"],
                )
            )["ids"][0]
            dup2 = (
                await ok(
                    client,
                    store,
                    content="The office WiFi password is tulip42!",
                    tier="long_term",
                    importance=0.3,
                )
            )["ids"][0]
            other = (await ok(client, store, content="The printer is on the second floor", tier="long_term"))[
                "ids"
            ][0]

            before = await ok(client, "get_memory_stats")
            dry = await ok(client, "consolidate_memory", tiers=["long_term"], dry_run=True)
            assert dry["dry_run"] is True and dry["removed"] == 0
            assert len(dry["merged"]) == 1
            group = dry["merged"][0]
            assert group["kept_id"] == keep and set(group["merged_ids"]) == {dup1, dup2}
            after_dry = await ok(client, "get_memory_stats")
            assert (
                tier_stats(after_dry, "long_term")["count"] == tier_stats(before, "long_term")["count"] == 4
            )

            done = await ok(client, "consolidate_memory", tiers=["long_term"])
            assert done["removed"] == 2 and done["merged"] == dry["merged"]
            res = await ok(client, "recall_memory", query="wifi password", tiers=["long_term"], limit=5)
            ids = [h["item"]["id"] for h in res["hits"]]
            assert keep in ids and dup1 not in ids and dup2 not in ids and other in ids
            kept = next(h["item"] for h in res["hits"] if h["item"]["id"] == keep)
            assert kept["source"] == "merged" and kept["importance"] == 0.9
            assert set(kept["tags"]) == {"wifi", "office"}
            assert {p["id"] for p in kept["provenance"]} == {dup1, dup2}
            assert all(p["similarity"] >= 0.92 for p in kept["provenance"])
            assert kept["access_count"] >= 3
            again = await ok(client, "consolidate_memory", tiers=["long_term"])
            assert again["merged"] == [] and again["removed"] == 0


async def test_consolidation_without_a_model_says_so(
    make_settings: MakeSettings, open_client: OpenClient, tmp_path: Path
) -> None:
    settings = make_settings(gemma={"model": str(tmp_path / "no-such-model")})
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            for text in ("Opened the billing page", "Changed the plan to Pro", "Entered a new card"):
                await ok(client, "store_memory", content=text, tier="episodic", session_id="sess-1")
            skipped = await ok(client, "consolidate_memory", session_id="sess-1", summarise=False)
            assert skipped["summaries"] == []
            assert any("not asked to summarise" in n for n in skipped["notes"])
            report = await ok(client, "consolidate_memory", session_id="sess-1")
            assert report["summaries"] == []
            assert any(
                "Gemma could not summarise" in n and "merged without summarising" in n
                for n in report["notes"]
            )
            assert len(await contents(client, "billing", tiers=["episodic"], limit=10)) == 3


async def test_namespaces_isolate_agents(make_settings: MakeSettings, open_client: OpenClient) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            await ok(client, "store_memory", content="Alice likes green tea", agent_id="alice")
            await ok(client, "store_memory", content="Bob likes black coffee", agent_id="bob")
            await ok(
                client, "store_memory", content="The team meets on Wednesdays", agent_id="bob", shared=True
            )
            alice = await contents(client, "drinks", agent_id="alice", limit=10)
            assert set(alice) == {"Alice likes green tea", "The team meets on Wednesdays"}
            bob = await contents(client, "drinks", agent_id="bob", limit=10, include_shared=False)
            assert bob == ["Bob likes black coffee"]
            assert await contents(client, "drinks", limit=10) == ["The team meets on Wednesdays"]
            await ok(client, "clear_memory", confirm=True, agent_id="alice")
            assert set(await contents(client, "drinks", agent_id="bob", limit=10)) == {
                "Bob likes black coffee",
                "The team meets on Wednesdays",
            }
            stats = await ok(client, "get_memory_stats", agent_id="alice")
            assert stats["total_count"] == 0


async def test_everything_survives_a_restart(make_settings: MakeSettings, open_client: OpenClient) -> None:
    settings = make_settings()
    with anyio.fail_after(180):
        async with open_client(settings) as client:
            for tier, text in FACTS.items():
                await ok(client, "store_memory", content=text, tier=tier, session_id="s")
        async with open_client(settings) as client:  # a fresh server: indexes and working cache rebuilt
            for tier, text in FACTS.items():
                got = await ok(client, "recall_memory", query=text, tiers=[tier], limit=1)
                assert [h["item"]["content"] for h in got["hits"]] == [text], tier
            stats = await ok(client, "get_memory_stats")
            assert stats["total_count"] == 5
            assert tier_stats(stats, "working")["bytes"] > 0


async def test_bad_input_is_refused_and_loses_nothing(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(180):
        async with open_client(make_settings()) as client:
            await ok(client, "store_memory", content="Keep me safe", tier="long_term", importance=0.9)
            msg = await fails(client, "store_memory", content="x", tier="scratchpad")
            assert "tier" in msg and "short_term" in msg
            msg = await fails(client, "store_memory", content="x", importance=2.0)
            assert "importance" in msg and "less than or equal to 1" in msg
            assert "content" in await fails(client, "store_memory", content="")
            assert "empty" in await fails(client, "store_memory", content="   ")
            flood = ["flood"] * 100_000
            msg = await fails(client, "store_memory", content=flood, tier="long_term")
            assert "content" in msg and "1000" in msg
            msg = await fails(client, "clear_memory", tier="long_term")
            assert "confirm: true" in msg
            assert "short_term" in await fails(client, "recall_memory", query="x", tiers=["nope"])
            stats = await ok(client, "get_memory_stats")
            assert stats["total_count"] == 1
            assert await contents(client, "safe") == ["Keep me safe"]


async def test_flood_against_a_small_capacity(make_settings: MakeSettings, open_client: OpenClient) -> None:
    settings = make_settings(tiers={"short_term": {"capacity": 10}})
    texts = [f"routine log line number {i % 50}" for i in range(1000)]
    with anyio.fail_after(180):
        async with open_client(settings) as client:
            keep = (await ok(client, "store_memory", content="The launch code is 0000", importance=0.95))[
                "ids"
            ][0]
            other = (await ok(client, "store_memory", content="Semantic fact", tier="semantic"))["ids"][0]
            for _ in range(5):  # 5,000 items against a capacity of 10
                report = await ok(client, "store_memory", content=texts, importance=0.1)
                assert report["tier_count"] == 10
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["count"] == 10
            assert tier_stats(stats, "short_term")["evicted"] == 5001 - 10
            got = await ok(client, "recall_memory", query="launch code", limit=1)
            assert got["hits"][0]["item"]["id"] == keep
            assert (await ok(client, "recall_memory", query="Semantic fact", tiers=["semantic"]))["hits"][0][
                "item"
            ]["id"] == other


async def test_clear_one_tier_leaves_the_others(make_settings: MakeSettings, open_client: OpenClient) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            for tier, text in FACTS.items():
                await ok(client, "store_memory", content=text, tier=tier)
            report = await ok(client, "clear_memory", tier="short_term", confirm=True)
            assert report["removed"] == {"short_term": 1}
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "short_term")["count"] == 0
            assert stats["total_count"] == 4
            everything = await ok(client, "clear_memory", confirm=True)
            assert sum(everything["removed"].values()) == 4
            assert (await ok(client, "get_memory_stats"))["total_count"] == 0


async def test_stats_report_counts_ages_and_hit_rate(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            t0 = time.time()
            await ok(client, "store_memory", content="first note", tier="episodic")
            await ok(client, "store_memory", content="second note", tier="episodic")
            await ok(client, "recall_memory", query="note", tiers=["episodic"])
            await ok(client, "recall_memory", query="note", tiers=["semantic"])
            stats = await ok(client, "get_memory_stats")
            ep = tier_stats(stats, "episodic")
            assert ep["count"] == 2 and ep["capacity"] == 5000 and ep["ttl_s"] == 7 * 24 * 3600
            assert ep["bytes"] > 2 * 384 * 4
            oldest = datetime.fromisoformat(ep["oldest_at"]).timestamp()
            newest = datetime.fromisoformat(ep["newest_at"]).timestamp()
            assert t0 - 1 <= oldest <= newest <= time.time()
            assert ep["hits"] == 1 and ep["misses"] == 0 and ep["hit_rate"] == 1.0
            sem = tier_stats(stats, "semantic")
            assert sem["hits"] == 0 and sem["misses"] == 1 and sem["hit_rate"] == 0.0
            assert tier_stats(stats, "working")["hit_rate"] is None
            assert stats["total_count"] == 2


async def test_resources_list_and_read_memories(make_settings: MakeSettings, open_client: OpenClient) -> None:
    with anyio.fail_after(120):
        async with open_client(make_settings()) as client:
            mid = (await ok(client, "store_memory", content="Resource note", tier="semantic"))["ids"][0]
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
            assert {"memory://{tier}{?agent_id}", "memory://{tier}/{id}{?agent_id}"} <= templates
            listing = await client.read_resource("memory://semantic")
            items = json.loads(listing.contents[0].text)  # type: ignore[union-attr]
            assert [i["id"] for i in items] == [mid]
            one = json.loads((await client.read_resource(f"memory://semantic/{mid}")).contents[0].text)  # type: ignore[union-attr]
            assert one["content"] == "Resource note"
            with pytest.raises(MCPError, match="no memory"):
                await client.read_resource("memory://semantic/0000000000000000")
            with pytest.raises(MCPError, match="unknown memory tier"):
                await client.read_resource("memory://scratch")


async def test_background_consolidation_runs_when_configured(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    settings = make_settings(consolidation_interval_s=0.3)
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            await ok(client, "store_memory", content="The door code is 1234", tier="semantic")
            await ok(client, "store_memory", content="the door code is 1234.", tier="semantic")
            counts = []
            for _ in range(100):  # the server's own timer merges them; poll its stats
                counts.append(tier_stats(await ok(client, "get_memory_stats"), "semantic")["count"])
                if counts[-1] == 1:
                    break
                await anyio.sleep(0.1)
            assert counts[-1] == 1, counts


async def test_two_servers_on_one_redis_see_each_others_writes(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    settings = make_settings()
    with anyio.fail_after(180):
        async with open_client(settings) as a, open_client(settings) as b:  # two processes' worth of state
            assert await contents(b, "bicycle") == []  # b has built its index now
            await ok(a, "store_memory", content="The bicycle lock code is 2468")
            assert await contents(b, "bicycle lock") == ["The bicycle lock code is 2468"]
            await ok(b, "clear_memory", confirm=True)
            assert await contents(a, "bicycle lock") == []
            assert (await ok(a, "get_memory_stats"))["total_count"] == 0


async def test_concurrent_stores_respect_capacity(
    make_settings: MakeSettings, open_client: OpenClient
) -> None:
    settings = make_settings(tiers={"episodic": {"capacity": 5}})
    with anyio.fail_after(180):
        async with open_client(settings) as client:
            texts = [f"event number {i} happened" for i in range(30)]
            await ok(client, "store_memory", content=texts, tier="episodic")  # embed once, then race
            await ok(client, "clear_memory", confirm=True, tier="episodic")

            async def store(text: str) -> None:
                await ok(client, "store_memory", content=text, tier="episodic")

            async with anyio.create_task_group() as tg:
                for text in texts:
                    tg.start_soon(store, text)
            stats = await ok(client, "get_memory_stats")
            assert tier_stats(stats, "episodic")["count"] == 5
            assert len(await contents(client, "event happened", tiers=["episodic"], limit=50)) == 5


async def test_one_scope_recall_reads_and_touches_in_one_script(
    make_settings: MakeSettings, open_client: OpenClient, redis_url: str
) -> None:
    """The one-scope, no-floor fast path skips hashes gone from Redis and books like the general path."""
    import redis.asyncio as aioredis

    settings = make_settings()
    texts = ["The cat sleeps on the red sofa", "The cat sleeps on the blue sofa", "The cat eats fish"]
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            ids = [
                (await ok(client, "store_memory", content=t, tier="long_term", agent_id="fast"))["ids"][0]
                for t in texts
            ]
            first = await ok(
                client, "recall_memory", query=texts[0], limit=3, agent_id="fast", include_shared=False
            )
            order = [h["item"]["id"] for h in first["hits"]]
            assert sorted(order) == sorted(ids)
            assert all(h["item"]["access_count"] == 2 for h in first["hits"])
            r = aioredis.from_url(redis_url)
            try:
                gone = [key async for key in r.scan_iter(match=f"*mem:{order[0]}")]
                assert len(gone) == 1
                await r.delete(*gone)  # still in this process's index: the next live candidate fills in
            finally:
                await r.aclose()
            fast = await ok(
                client, "recall_memory", query=texts[0], limit=2, agent_id="fast", include_shared=False
            )
            assert [h["item"]["id"] for h in fast["hits"]] == order[1:]
            assert all(h["item"]["access_count"] == 3 for h in fast["hits"])
            assert all(h["score"] <= 1.0 and "similarity" in h["why"] for h in fast["hits"])
            general = await ok(  # a score floor takes the general path (fetch, then touch)
                client,
                "recall_memory",
                query=texts[0],
                limit=2,
                agent_id="fast",
                include_shared=False,
                min_score=1e-9,
            )
            assert [h["item"]["id"] for h in general["hits"]] == order[1:]
            assert all(h["item"]["access_count"] == 4 for h in general["hits"])
            stats = await ok(client, "get_memory_stats", agent_id="fast")
            assert tier_stats(stats, "long_term")["hits"] == 3
            assert tier_stats(stats, "semantic")["misses"] == 3


async def test_fast_recall_past_a_head_of_gone_candidates_sends_the_whole_ranking(
    make_settings: MakeSettings, open_client: OpenClient, redis_url: str
) -> None:
    """The fast path sends the script a head of the ranking; when every memory of that head is gone
    from Redis, the whole ranking is sent, and the access is counted once (hits, counts)."""
    import redis.asyncio as aioredis

    from mcp_gemma.memory.recall import FETCH_SPARE

    settings = make_settings()
    head = 2 * 1 + FETCH_SPARE  # what a limit=1 recall sends first
    texts = [f"The cat sleeps on sofa number {i}" for i in range(head + 2)]
    with anyio.fail_after(120):
        async with open_client(settings) as client:
            await ok(client, "store_memory", content=texts, tier="long_term", agent_id="deep")
            query = "The cat sleeps on sofa"
            first = await ok(
                client, "recall_memory", query=query, limit=len(texts), agent_id="deep", include_shared=False
            )
            order = [h["item"]["id"] for h in first["hits"]]
            assert len(order) == len(texts)
            r = aioredis.from_url(redis_url)
            try:
                gone = [key for mid in order[:head] async for key in r.scan_iter(match=f"*mem:{mid}")]
                assert len(gone) == head
                await r.delete(*gone)  # still in this process's index: the whole head is stale
            finally:
                await r.aclose()
            deep = await ok(
                client, "recall_memory", query=query, limit=1, agent_id="deep", include_shared=False
            )
            assert [h["item"]["id"] for h in deep["hits"]] == [order[head]]
            assert deep["hits"][0]["item"]["access_count"] == 3  # stored, first recall, this one
            stats = await ok(client, "get_memory_stats", agent_id="deep")
            assert tier_stats(stats, "long_term")["hits"] == 2
            assert tier_stats(stats, "long_term")["misses"] == 0  # the refused head counted nothing
            assert tier_stats(stats, "semantic")["misses"] == 2
            again = await ok(
                client, "recall_memory", query=query, limit=2, agent_id="deep", include_shared=False
            )
            assert [h["item"]["id"] for h in again["hits"]] == order[head:]
            assert [h["item"]["access_count"] for h in again["hits"]] == [4, 3]
