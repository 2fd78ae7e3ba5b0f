"""Agent runs in the background: start a ReAct run, read its state and follow its steps as they come.

:class:`AgentRuns` keeps a bounded number of runs (the oldest finished one is forgotten first) and
runs at most ``active`` at once; the runs live in a task group opened by :meth:`AgentRuns.serving`,
so they stop when the server does. The REST API's ``/v1/agent/runs`` is built on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, Field

from mcp_gemma.agent.models import AgentCheckpoint, AgentReport, AgentStep
from mcp_gemma.agent.react import ProgressFn, ReactAgent
from mcp_gemma.errors import McpGemmaError, NotFoundError, ServerBusyError, StoreUnavailableError

logger = logging.getLogger(__name__)

RunStatus = Literal["running", "finished", "failed", "cancelled"]


class AgentRun(BaseModel):
    """One background agent run: its state, the steps so far and, once it ends, its report."""

    id: str = Field(description="Run id (GET /v1/agent/runs/{id}).")
    status: RunStatus = Field(
        description="running, finished (the report says why it stopped), failed (error says why) or "
        "cancelled (the server stopped)."
    )
    task: str
    created_at: float = Field(description="Unix time the run started.")
    finished_at: float | None = Field(None, description="Unix time the run ended.")
    plan: list[str] | None = Field(None, description="Sub-goals from the planning step, when it ran.")
    steps: list[AgentStep] = Field(description="The steps taken so far.")
    report: AgentReport | None = Field(None, description="The final report, once finished.")
    error: str | None = Field(None, description="Why the run failed, when it did.")


@dataclass
class _Run:
    id: str
    checkpoint: AgentCheckpoint
    created_at: float = field(default_factory=time.time)
    status: RunStatus = "running"
    finished_at: float | None = None
    report: AgentReport | None = None
    error: str | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        """Wake everyone following the run (a new step, or the end)."""
        self.changed.set()
        self.changed = anyio.Event()

    def view(self) -> AgentRun:
        return AgentRun(
            id=self.id,
            status=self.status,
            task=self.checkpoint.task,
            created_at=self.created_at,
            finished_at=self.finished_at,
            plan=self.checkpoint.plan,
            steps=list(self.checkpoint.steps),
            report=self.report,
            error=self.error,
        )


RunEvent = AgentStep | AgentRun
LoopFactory = Callable[[ProgressFn], ReactAgent]


class AgentRuns:
    """The agent runs of one process."""

    def __init__(self, *, kept: int, active: int) -> None:
        self.kept = kept
        self.active = active
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._group: TaskGroup | None = None

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[AgentRuns]:
        """Accept runs while inside; leaving cancels the runs still going."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield self
            finally:
                self._group = None
                group.cancel_scope.cancel()

    def start(self, checkpoint: AgentCheckpoint, make_loop: LoopFactory) -> AgentRun:
        """Start a run of ``checkpoint`` with the loop ``make_loop`` builds (given the progress hook)."""
        if self._group is None:
            raise StoreUnavailableError("agent runs are not accepted while the server starts or stops; retry")
        running = sum(1 for r in self._runs.values() if r.status == "running")
        if running >= self.active:
            raise ServerBusyError(
                f"{running} agent runs are going (http.agent_runs_active={self.active}); "
                "retry when one has finished"
            )
        self._forget_oldest()
        run = _Run(id=uuid.uuid4().hex, checkpoint=checkpoint)
        self._runs[run.id] = run
        self._group.start_soon(self._drive, run, make_loop, name=f"agent run {run.id}")
        return run.view()

    def _forget_oldest(self) -> None:
        while len(self._runs) >= self.kept:
            done = next((rid for rid, r in self._runs.items() if r.status != "running"), None)
            if done is None:
                raise ServerBusyError(
                    f"{len(self._runs)} agent runs are kept and all are running (http.agent_runs_kept); "
                    "retry when one has finished"
                )
            del self._runs[done]

    async def _drive(self, run: _Run, make_loop: LoopFactory) -> None:
        async def on_progress(_done: float, _total: float | None, _message: str) -> None:
            run.touch()

        try:
            run.report = await make_loop(on_progress).run(run.checkpoint)
            run.status = "finished"
        except McpGemmaError as exc:
            run.status, run.error = "failed", str(exc)
        except anyio.get_cancelled_exc_class():
            run.status, run.error = "cancelled", "the server stopped before the run ended"
            raise
        except Exception as exc:
            logger.exception("agent run %s failed", run.id)
            run.status, run.error = (
                "failed",
                f"internal error ({type(exc).__name__}); the server log has details",
            )
        finally:
            run.finished_at = time.time()
            run.touch()

    def _get(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"no agent run {run_id!r}: it never existed or was forgotten "
                f"(the newest {self.kept} are kept); start one with POST /v1/agent/runs"
            )
        return run

    def get(self, run_id: str) -> AgentRun:
        """A run's state now."""
        return self._get(run_id).view()

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        """The run's steps after the first ``after`` as they happen (each an :class:`AgentStep`), then
        its final state (an :class:`AgentRun`)."""
        run = self._get(run_id)
        sent = after
        while True:
            changed = run.changed
            steps = run.checkpoint.steps
            while sent < len(steps):
                yield steps[sent]
                sent += 1
            if run.status != "running":
                yield run.view()
                return
            await changed.wait()
