"""``/v1/memory``, ``/healthz``, ``/readyz``, ``/metrics``, the Host / Origin checks and the agent
routes' refusals, against a running server; the MCP endpoint answers on the same port."""

from __future__ import annotations

import re
import uuid

import anyio
import httpx
import pytest
from mcp import Client

from tests.integration.conftest import SpawnedServer

from .conftest import base_url
from .test_documents_search import problem


def test_health_and_readiness(api: httpx.Client) -> None:
    live = api.get("/healthz")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = api.get("/readyz").json()
    assert ready["ready"] is True
    assert sorted(c["kind"] for c in ready["components"]) == ["embedder", "llm", "memory", "vector_index"]


def test_memory_store_recall_stats_clear(api: httpx.Client) -> None:
    agent = f"a{uuid.uuid4().hex[:10]}"
    stored = api.post(
        "/v1/memory",
        json={
            "content": ["The user drinks green tea every morning.", "The deploy key rotates on Fridays."],
            "tier": "long_term",
            "importance": 0.8,
            "tags": ["prefs"],
            "agent_id": agent,
        },
    )
    assert stored.status_code == 200, stored.text
    report = stored.json()
    assert (report["tier"], report["agent_id"], report["tier_count"], len(report["ids"])) == (
        "long_term",
        agent,
        2,
        2,
    )
    recalled = api.post("/v1/memory/recall", json={"query": "what does the user drink?", "agent_id": agent})
    assert recalled.status_code == 200, recalled.text
    hits = recalled.json()["hits"]
    assert hits[0]["item"]["content"] == "The user drinks green tea every morning."
    assert hits[0]["item"]["id"] == report["ids"][0]
    stats = api.get("/v1/memory/stats", params={"agent_id": agent}).json()
    assert {t["tier"]: t["count"] for t in stats["tiers"]}["long_term"] == 2
    refused = problem(api.delete("/v1/memory", params={"agent_id": agent}), 422)
    assert "confirm" in refused["detail"]
    cleared = api.delete("/v1/memory", params={"agent_id": agent, "confirm": "true", "tier": "long_term"})
    assert cleared.json() == {"agent_id": agent, "removed": {"long_term": 2}}
    after = api.get("/v1/memory/stats", params={"agent_id": agent}).json()
    assert {t["tier"]: t["count"] for t in after["tiers"]}["long_term"] == 0
    assert (
        "body.tier"
        in problem(api.post("/v1/memory", json={"content": "x", "tier": "forever"}), 422)["detail"]
    )
    assert (
        "query.agent_id"
        in problem(api.get("/v1/memory/stats", params={"agent_id": "no spaces"}), 422)["detail"]
    )


def test_foreign_host_and_origin_are_refused(api: httpx.Client) -> None:
    misdirected = problem(api.get("/healthz", headers={"host": "evil.example"}), 421)
    assert "'evil.example'" in misdirected["detail"] and "http.allowed_hosts" in misdirected["detail"]
    foreign = problem(api.get("/healthz", headers={"origin": "http://evil.example"}), 403)
    assert "http.cors_origins" in foreign["detail"]
    same = api.get("/healthz", headers={"origin": str(api.base_url).rstrip("/")})
    assert same.status_code == 200
    assert "access-control-allow-origin" not in same.headers  # no CORS unless configured


def test_agent_run_refusals(api: httpx.Client) -> None:
    unknown = problem(api.post("/v1/agent/runs", json={"task": "x", "tools": ["teleport"]}), 422)
    assert "unknown or disabled tools: teleport" in unknown["detail"]
    missing = problem(api.get(f"/v1/agent/runs/{'0' * 32}"), 404)
    assert "POST /v1/agent/runs" in missing["detail"]
    problem(api.get(f"/v1/agent/runs/{'0' * 32}/events"), 404)
    assert "path.id" in problem(api.get("/v1/agent/runs/not-an-id"), 422)["detail"]
    assert (
        "body.max_steps"
        in problem(api.post("/v1/agent/runs", json={"task": "x", "max_steps": 0}), 422)["detail"]
    )


def _sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    raise AssertionError(f"{name}{{{want}}} not in the scrape")


@pytest.mark.anyio
async def test_metrics_count_rest_requests_and_mcp_tool_calls(api_server: SpawnedServer) -> None:
    url = base_url(api_server)
    async with httpx.AsyncClient(base_url=url) as http:
        before = (await http.get("/metrics")).text
        await http.get("/healthz")
        await http.post("/v1/search", json={"query": "x", "limit": 0})
        with anyio.fail_after(60):
            async with Client(f"{url}/mcp") as client:
                result = await client.call_tool("health_check", {})
        assert not result.is_error
        scrape = await http.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    text = scrape.text

    def grew(name: str, **labels: str) -> float:
        try:
            old = _sample(before, name, **labels)
        except AssertionError:
            old = 0.0
        return _sample(text, name, **labels) - old

    assert grew("mcp_gemma_http_requests_total", method="GET", route="/healthz", status="200") == 1
    assert grew("mcp_gemma_http_requests_total", method="POST", route="/v1/search", status="422") == 1
    assert grew("mcp_gemma_http_request_duration_seconds_count", method="GET", route="/healthz") == 1
    assert grew("mcp_gemma_tool_calls_total", tool="health_check") == 1
    assert grew("mcp_gemma_tool_duration_seconds_count", tool="health_check") == 1
    assert _sample(text, "mcp_gemma_tool_duration_seconds_bucket", tool="health_check", le="+Inf") >= 1
    assert _sample(text, "mcp_gemma_redis_up") == 1
    assert _sample(text, "mcp_gemma_redis_ping_seconds") > 0
    assert _sample(text, "mcp_gemma_component_loaded", component="gemma", kind="llm") == 0  # never asked
    assert _sample(text, "mcp_gemma_component_loaded", component="memory", kind="memory") == 1
    assert _sample(text, "mcp_gemma_index_documents") >= 0
