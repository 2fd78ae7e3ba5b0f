"""``/v1/agent/runs``: ReAct agent runs with the local Gemma, in the background, followed as SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from mcp_gemma.agent.brain import LocalBrain
from mcp_gemma.agent.builtin_tools import KnowledgeServices, ToolEnv, build_toolbox
from mcp_gemma.agent.models import AgentStep
from mcp_gemma.agent.react import ProgressFn, ReactAgent, first_checkpoint
from mcp_gemma.agent.runs import AgentRun, AgentRuns
from mcp_gemma.api.access import Caller, checked
from mcp_gemma.api.deps import State
from mcp_gemma.api.documents import CollectionField
from mcp_gemma.api.problems import problem_responses
from mcp_gemma.api.sse import EVENT_STREAM, sse_event, sse_response, wants_stream
from mcp_gemma.errors import ModelUnavailableError, StoreUnavailableError
from mcp_gemma.security.rights import check_tool

router = APIRouter(prefix="/v1/agent", tags=["agent"], responses=problem_responses(413))

RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="Run id from POST /v1/agent/runs.")]
EVENTS_HELP = (
    "Events 'step' (an AgentStep, id = its index) as the run takes them, then 'done' (the AgentRun). "
    "Send Last-Event-ID to resume after a step."
)


class AgentRunRequest(BaseModel):
    """A task for the agent, the tools it may use and its budgets."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=8000, description="What the agent should do.")
    tools: list[str] | None = Field(
        None,
        max_length=32,
        description="Tools the agent may call, e.g. ['calculator']. Default: every safe tool offered here.",
    )
    max_steps: int | None = Field(None, ge=1, le=100, description="Step budget (default agent.max_steps).")
    max_seconds: float | None = Field(
        None, gt=0, le=86_400, description="Time budget in seconds (default agent.max_seconds)."
    )
    plan: bool | None = Field(None, description="First split the task into sub-goals (one extra model call).")
    collection: str = CollectionField


def _runs(request: Request) -> AgentRuns:
    runs: AgentRuns | None = getattr(request.app.state, "agent_runs", None)
    if runs is None:
        raise StoreUnavailableError("agent runs are not accepted while the server starts or stops; retry")
    return runs


@router.post("/runs", status_code=202, responses=problem_responses(422, 503))
async def start_run(body: AgentRunRequest, state: State, request: Request, caller: Caller) -> AgentRun:
    """Start a ReAct run (thought → action → observation) with the server's Gemma and tools, in the
    background; follow it with GET /v1/agent/runs/{id} or its /events stream."""
    args = {"tools": body.tools, "collection": body.collection}
    check_tool(caller, "run_agent", args)
    settings = state.settings
    if not settings.gemma.model:
        raise ModelUnavailableError("no local model is configured (gemma.model); agent runs need one")
    services = KnowledgeServices(state.collection(body.collection), state.memory)
    toolbox = build_toolbox(settings, services)
    checkpoint = first_checkpoint(
        settings.agent,
        toolbox,
        body.task,
        body.tools,
        max_steps=body.max_steps,
        max_seconds=body.max_seconds,
        plan=body.plan,
    )
    brain = LocalBrain(state.llm)
    env = ToolEnv(settings, services)

    def make_loop(progress: ProgressFn) -> ReactAgent:
        return ReactAgent(brain, toolbox, env, settings.agent, progress=progress)

    async with checked(state, caller, "run_agent", args, []):
        return _runs(request).start(checkpoint, make_loop)


@router.get("/runs/{id}", response_model=AgentRun, responses=sse_response(EVENTS_HELP, AgentRun))
async def get_run(
    id: RunId,
    request: Request,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response | AgentRun:
    """A run's state, steps so far and, once it ended, its report; with ``Accept: text/event-stream``
    the steps as Server-Sent Events (as /events)."""
    runs = _runs(request)
    if wants_stream(accept):
        return _event_stream(runs, id, last_event_id)
    return runs.get(id)


@router.get("/runs/{id}/events", response_class=StreamingResponse, responses=sse_response(EVENTS_HELP))
async def run_events(
    id: RunId,
    request: Request,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The run's steps as Server-Sent Events as they happen, then its final state."""
    return _event_stream(_runs(request), id, last_event_id)


def _event_stream(runs: AgentRuns, run_id: str, last_event_id: str | None) -> Response:
    runs.get(run_id)  # an unknown run is a 404 before the stream starts
    after = int(last_event_id) if last_event_id is not None and last_event_id.isdigit() else 0

    async def events() -> AsyncIterator[bytes]:
        async for item in runs.follow(run_id, after):
            if isinstance(item, AgentStep):
                yield sse_event("step", item, event_id=str(item.index))
            else:
                yield sse_event("done", item)

    return StreamingResponse(events(), media_type=EVENT_STREAM, headers={"cache-control": "no-store"})
