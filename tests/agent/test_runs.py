"""``AgentRuns``: background runs, their bounds and following their steps.

The brain is ``ScriptedBrain``, a deterministic stand-in, so the bounds and the event order can be
asserted exactly; tests/api/test_model_routes.py runs the same machinery with the real Gemma.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from mcp_gemma.agent.builtin_tools import ToolEnv, build_toolbox
from mcp_gemma.agent.models import AgentStep
from mcp_gemma.agent.react import ProgressFn, ReactAgent, first_checkpoint
from mcp_gemma.agent.runs import AgentRun, AgentRuns
from mcp_gemma.errors import InvalidInputError, NotFoundError, ServerBusyError, StoreUnavailableError
from mcp_gemma.settings import load_settings
from tests.agent.scripted import ScriptedBrain, answer, call

pytestmark = pytest.mark.anyio


def starter(tmp_path: Path) -> Callable[..., AgentRun]:
    """``start(runs, brain, task)``: start a calculator run of ``task`` with ``brain``."""
    settings = load_settings(data_dir=tmp_path / "data")
    toolbox = build_toolbox(settings)

    def start(runs: AgentRuns, brain: ScriptedBrain, task: str = "17 * 23?") -> AgentRun:
        checkpoint = first_checkpoint(settings.agent, toolbox, task, ["calculator"], max_steps=3)

        def make_loop(progress: ProgressFn) -> ReactAgent:
            return ReactAgent(brain, toolbox, ToolEnv(settings), settings.agent, progress=progress)

        return runs.start(checkpoint, make_loop)

    return start


async def test_a_run_goes_in_the_background_and_its_steps_can_be_followed(tmp_path: Path) -> None:
    start = starter(tmp_path)
    runs = AgentRuns(kept=4, active=2)
    async with runs.serving():
        brain = ScriptedBrain([call("calculator", expression="17 * 23"), answer("391")], delay=0.05)
        run = start(runs, brain)
        assert (run.status, run.steps, run.report) == ("running", [], None)
        with anyio.fail_after(30):
            events = [item async for item in runs.follow(run.id)]
        final = runs.get(run.id)
    assert [type(e).__name__ for e in events] == ["AgentStep", "AgentStep", "AgentRun"]
    assert [e.index for e in events if isinstance(e, AgentStep)] == [1, 2]
    assert events[-1] == final
    assert (final.status, final.error, final.report and final.report.answer) == ("finished", None, "391")
    assert final.finished_at is not None and final.finished_at >= final.created_at
    with anyio.fail_after(5):  # following a finished run replays it, after a given step too
        again = [item async for item in runs.follow(run.id, after=1)]
    assert again == [final.steps[1], final]


async def test_bounds_and_refusals(tmp_path: Path) -> None:
    start = starter(tmp_path)
    runs = AgentRuns(kept=2, active=1)
    blocked = ScriptedBrain([], block_at=1)
    with pytest.raises(StoreUnavailableError, match="not accepted"):
        start(runs, blocked)  # outside serving(): nothing would drive it
    async with runs.serving():
        first = start(runs, blocked)
        with anyio.fail_after(10):
            await blocked.blocked.wait()
        with pytest.raises(ServerBusyError, match="agent_runs_active=1"):
            start(runs, ScriptedBrain([answer("x")]))
        with pytest.raises(InvalidInputError, match="unknown or disabled tools: teleport"):
            first_checkpoint(load_settings(data_dir=tmp_path).agent, {}, "x", ["teleport"])
        with pytest.raises(NotFoundError, match="POST /v1/agent/runs"):
            runs.get("0" * 32)
    # Leaving serving() cancelled the run that was still going.
    assert (runs.get(first.id).status, runs.get(first.id).error) == (
        "cancelled",
        "the server stopped before the run ended",
    )
    runs = AgentRuns(kept=2, active=2)
    async with runs.serving():
        done = []
        for task in ("a", "b", "c"):
            run = start(runs, ScriptedBrain([answer(task)]), task)
            with anyio.fail_after(10):
                done.append([item async for item in runs.follow(run.id)][-1])
    assert [d.report.answer for d in done if d.report] == ["a", "b", "c"]
    with pytest.raises(NotFoundError):
        runs.get(done[0].id)  # the oldest finished run was forgotten for the third
    assert runs.get(done[2].id).status == "finished"
