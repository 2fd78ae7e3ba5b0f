"""The answer-quality benchmark's bounded version (``benches/bench_answers.py``) through a real MCP
client session.

Success counts are deterministic (greedy decoding, the same tasks and tools every run), so they are
thresholds, not timings. The scripted client brain must solve every task: that shows the tasks, the
tools and the checks are right. The local Gemma 270M runs a handful of tasks; what it solves is
asserted as the target met, what it misses as a known gap (see benches/README.md for the full run).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from mcp import Client

from benches.bench_answers import ScriptedClientModel, clock, load_tasks, prepare, run_brain
from mcp_gemma.agent import builtin_tools
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

pytestmark = pytest.mark.anyio

LOCAL_TASKS = ["arith-01", "date-02", "doc-02", "file-02", "two-01"]
LOCAL_SOLVED = {"arith-01", "date-02", "two-01"}
"""What the shipped model solves among LOCAL_TASKS on every host measured; file-02 is a known gap
(issue 14)."""
HOST_DEPENDENT = {"doc-02"}
"""Solved on the 2026-11-30 host (AVX-512), missed on the 2026-12-01 one (AVX2 only: it answers "blue"
for the red roof it was shown), with the same code: numpy and OpenBLAS pick their SIMD kernels by CPU,
so sums round differently in the last bits and a near-tied greedy step can go the other way."""


def bench_settings(settings: Settings, root: Path) -> Settings:
    return load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value() if settings.redis_url else None,
        namespace=settings.namespace,
        allowed_roots=[root],
    )


async def run(
    settings: Settings, tmp_path: Path, brain: str, only: list[str] | None, now: datetime | None = None
) -> dict[str, object]:
    data = load_tasks(only)
    values = clock(now)
    root = tmp_path / "root"
    root.mkdir()
    model = ScriptedClientModel(values)
    async with Client(create_server(bench_settings(settings, root)), sampling_callback=model) as client:
        await prepare(client, data, root)
        return await run_brain(client, brain, data["tasks"], values, model)


async def test_scripted_client_brain_solves_every_task(settings: Settings, tmp_path: Path) -> None:
    with anyio.fail_after(240):
        summary = await run(settings, tmp_path, "scripted", None)
    assert summary["all"] == {"success": 42, "tasks": 42, "rate": 1.0}, summary["failures"]
    assert summary["two_step"] == {"success": 8, "tasks": 8, "rate": 1.0}
    assert summary["tool_call_validity"] == 1.0


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_local_brain_on_a_bounded_subset(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The date tool's answer (to the second) is part of the model's next prompt: pinned, so the greedy
    # runs are the same every time.
    pinned = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(builtin_tools, "clock", lambda zone: pinned.astimezone(zone))
    with anyio.fail_after(850):
        summary = await run(settings, tmp_path, "local", LOCAL_TASKS, pinned)
    assert summary["tool_call_validity"] == 1.0  # every action decoded under the tools' grammar
    missed = {f["id"] for f in summary["failures"]}  # type: ignore[attr-defined]
    solved = set(LOCAL_TASKS) - missed
    assert LOCAL_SOLVED <= solved <= LOCAL_SOLVED | HOST_DEPENDENT, summary["failures"]
    research = summary["research_query"]
    assert (research["questions"], research["cites_supporting_chunk"]) == (1, 1)  # type: ignore[index]
