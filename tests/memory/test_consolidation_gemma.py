"""Consolidation with the real Gemma model: an episode becomes one semantic fact that cites it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.models import ModelStore
from mcp_gemma.llm.service import LLMService
from mcp_gemma.server.app import create_server
from mcp_gemma.state import SharedState

from .conftest import MakeSettings, contents, ok

pytestmark = [pytest.mark.anyio, pytest.mark.model]

EVENTS = [
    "The user opened the billing page",
    "The user upgraded the plan from Free to Pro",
    "The user paid with a Visa card ending in 4242",
]


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> GemmaModel:
    return GemmaModel.load(GemmaSettings(), ModelStore(tmp_path_factory.mktemp("models")))


async def test_gemma_summarises_an_episode_into_a_semantic_fact(
    make_settings: MakeSettings, gemma: GemmaModel, tmp_path: Path
) -> None:
    settings = make_settings()
    shared = SharedState(settings)
    with anyio.fail_after(300):
        async with shared.hold() as state:
            state.llm = LLMService(GemmaSettings(), tmp_path, model=gemma)  # type: ignore[attr-defined]
            async with Client(create_server(settings, shared), raise_exceptions=True) as client:
                ids = []
                for text in EVENTS:
                    report = await ok(client, "store_memory", content=text, tier="episodic", session_id="s1")
                    ids.append(report["ids"][0])
                dry = await ok(client, "consolidate_memory", session_id="s1", dry_run=True)
                assert [s["source_ids"] for s in dry["summaries"]] == [ids]
                assert dry["summaries"][0]["semantic_id"] is None
                assert await contents(client, "billing plan", tiers=["semantic"]) == []

                done = await ok(client, "consolidate_memory", session_id="s1")
                assert done["notes"] == []
                summary = done["summaries"][0]
                assert summary["semantic_id"] and summary["summary"].strip()
                res = await ok(client, "recall_memory", query="billing plan", tiers=["semantic"], limit=1)
                fact = res["hits"][0]["item"]
                assert fact["id"] == summary["semantic_id"] and fact["source"] == "summary"
                assert fact["session_id"] == "s1"
                assert [p["id"] for p in fact["provenance"]] == ids

                again = await ok(client, "consolidate_memory", session_id="s1")
                assert again["summaries"] == []  # an episode is summarised once
