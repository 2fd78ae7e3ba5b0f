"""The server on a real 3-master Redis Cluster (see conftest.py): the tool suite's main flows, data
spread over every master, two HTTP replicas that agree, and a master killed mid-ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from redis.crc import key_slot

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.rag.models import DocumentInput
from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.state import AppState
from mcp_gemma.store.keys import Keys

from ..integration.conftest import SpawnedServer, server_env
from ..integration.test_memory_tools import test_store_recall_stats_clear
from ..integration.test_rag_tools import (
    test_ingest_search_get_delete,
    test_restart_rebuilds_from_redis,
    test_two_servers_over_one_redis_agree,
)
from .conftest import LocalCluster, poll

pytestmark = pytest.mark.anyio

# the tool suite's main flows, unchanged, on the cluster (conftest.py's settings and connect)
__all__ = [
    "test_ingest_search_get_delete",
    "test_restart_rebuilds_from_redis",
    "test_store_recall_stats_clear",
    "test_two_servers_over_one_redis_agree",
]

TOPICS = ["tides", "glaciers", "volcanoes", "forests", "deserts", "rivers", "storms", "caves", "reefs"]


def text_of(i: int) -> str:
    return f"Note {i} is about {TOPICS[i % len(TOPICS)]} and carries the serial number s{i:04d}."


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_documents_and_memories_spread_over_every_master(
    settings: Settings, cluster: LocalCluster
) -> None:
    n = 90
    with anyio.fail_after(240):
        state = await AppState.open(settings)
        try:
            report = await state.rag.ingest_documents(
                [DocumentInput(text=text_of(i), id=f"note-{i}") for i in range(n)]
            )
            assert report.created == n
            for agent in ("alice", "bob", "carol", "dave", "erin", "frank"):
                await state.memory.store([f"{agent} likes {TOPICS[len(agent)]}."], agent_id=agent)
            assert (await state.rag.list_documents(limit=100)).total == n
            hits = (await state.rag.hybrid_search("serial number s0042", limit=1)).hits
            assert hits[0].doc_id == "note-42"
        finally:
            await state.close()
    keys = Keys(settings.namespace)
    docs_per_master: dict[int, int] = {}
    for port in cluster.masters():
        with cluster.node(port).client() as c:
            docs_per_master[port] = sum(1 for _ in c.scan_iter(match=f"{{{settings.namespace}/*}}:doc:*"))
    assert sum(docs_per_master.values()) == n
    assert all(0 < count <= 1.5 * n / 3 for count in docs_per_master.values()), docs_per_master
    # a document's hash and its chunks sit on one master, in one slot
    owner = cluster.node(cluster.master_of_slot(key_slot(keys.doc("note-7").encode())))
    with owner.client() as c:
        head = c.hgetall(keys.doc("note-7"))
        chunk_ids = [int(x) for x in head[b"chunk_ids"].decode().split(",")]
        assert all(c.exists(keys.chunk(cid)) for cid in chunk_ids)
    assert {key_slot(keys.chunk(cid).encode()) for cid in chunk_ids} == {
        key_slot(keys.doc("note-7").encode())
    }


async def test_two_http_replicas_agree(cluster: LocalCluster, tmp_path: Path, namespace: str) -> None:
    def spawn(name: str) -> SpawnedServer:
        data_dir = tmp_path / name / "data"
        env = server_env(data_dir, MCP_GEMMA_REDIS_URL=cluster.url, MCP_GEMMA_NAMESPACE=namespace)
        return SpawnedServer("http", data_dir, env=env)

    a, b = spawn("a"), spawn("b")
    try:
        with anyio.fail_after(180):
            async with Client(a.url) as ca, Client(b.url) as cb:
                # b builds its index before a writes: it must learn of the change from the streams
                assert data(await cb.call_tool("list_documents", {}))["total"] == 0
                text = "Lighthouses guide ships with a rotating lamp and a fresnel lens."
                data(await ca.call_tool("ingest_document", {"text": text, "id": "beacon"}))
                hits = data(
                    await cb.call_tool("search_documents", {"query": "fresnel lens lamp", "limit": 3})
                )
                assert [h["doc_id"] for h in hits["hits"]] == ["beacon"]

                data(await cb.call_tool("delete_document", {"id": "beacon"}))
                assert data(await ca.call_tool("list_documents", {}))["total"] == 0
                gone = data(
                    await ca.call_tool("search_documents", {"query": "fresnel lens lamp", "limit": 3})
                )
                assert gone["hits"] == []

                stored = data(
                    await ca.call_tool(
                        "store_memory", {"content": "The ferry leaves at 7:40.", "tier": "long_term"}
                    )
                )
                recalled = data(await cb.call_tool("recall_memory", {"query": "when does the ferry leave"}))
                assert [h["item"]["id"] for h in recalled["hits"]] == stored["ids"]
                assert recalled["hits"][0]["item"]["content"] == "The ferry leaves at 7:40."
    finally:
        a.stop()
        b.stop()


async def test_master_killed_mid_ingest_loses_no_acknowledged_write(
    own_cluster: LocalCluster, tmp_path: Path, namespace: str
) -> None:
    cluster = own_cluster
    base = {"redis_url": cluster.url, "namespace": namespace, "redis_min_replicas_ack": 1}
    settings = load_settings(data_dir=tmp_path / "a", redis_failover_wait_s=30, **base)
    impatient = load_settings(data_dir=tmp_path / "b", redis_failover_wait_s=1, **base)
    keys = Keys(namespace)
    victim = cluster.master_of_slot(0)
    (heir,) = cluster.topology()[victim]["replicas"]  # type: ignore[misc]
    n, kill_after = 24, 8
    with anyio.fail_after(240):
        state, other = await AppState.open(settings), await AppState.open(impatient)
        try:
            acknowledged = []
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    if i == kill_after:
                        cluster.node(victim).kill()
                        # as an operator would: once the replica has taken over, the old master is
                        # started again and rejoins as its replica (writes to those slots wait for it)
                        tg.start_soon(anyio.to_thread.run_sync, restart_when_replaced, cluster, victim, heir)
                    report = await state.rag.ingest(text_of(i), doc_id=f"note-{i}")
                    assert report.status == "created"
                    acknowledged.append(report.id)
            assert cluster.master_of_slot(0) == heir  # the replica took over the dead master's slots
            assert cluster.topology()[heir]["replicas"] == [victim]

            # both the master and its replica gone: those slots are uncovered, a clear error
            cluster.node(heir).kill()
            cluster.node(victim).kill()
            with pytest.raises(StoreUnavailableError, match="some slots have no reachable master"):
                await other.rag.ingest("Written while the slots are down.", doc_id=_uncovered_id(keys))
            # both come back with their data: calls work again by themselves
            cluster.node(heir).start()
            cluster.node(victim).start()
            cluster.wait_healthy()
            report = await other.rag.ingest("Written after the slots came back.", doc_id=_uncovered_id(keys))
            assert report.status == "created"
        finally:
            await state.close()
            await other.close()

        fresh = await AppState.open(load_settings(data_dir=tmp_path / "c", **base))  # rebuilt from Redis
        try:
            listing = await fresh.rag.list_documents(limit=100)
            assert sorted(d.id for d in listing.documents) == sorted([*acknowledged, _uncovered_id(keys)])
            for i in range(n):
                assert await fresh.rag.document_text(f"note-{i}") == text_of(i)
        finally:
            await fresh.close()


def restart_when_replaced(cluster: LocalCluster, victim: int, heir: int) -> None:
    """Start the killed master again once its replica has taken over its slots."""
    poll(lambda: cluster.master_of_slot(0) == heir, "the replica to take over")
    cluster.node(victim).start()


def _uncovered_id(keys: Keys) -> str:
    """A document id in slot range 0-5460 (the first master's, in redis-cli's layout)."""
    for j in range(10_000):
        candidate = f"late-{j}"
        if key_slot(keys.doc(candidate).encode()) <= 5460:
            return candidate
    raise LookupError("no id")
