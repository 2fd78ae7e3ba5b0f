"""The agent's built-in tools as MCP tools (``agent_*``), and ``run_agent``, the ReAct loop.

Tools that could only fail in this configuration are not registered: the file tools need
``allowed_roots``, ``agent_write_file`` also ``agent.enable_write_file``, ``agent_fetch_url``
an allow-list, ``agent_web_search`` a search endpoint.
"""

import logging
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from mcp_gemma.agent import sandbox
from mcp_gemma.agent.builtin_tools import (
    DateTimeResult,
    KnowledgeServices,
    SystemInfo,
    ToolEnv,
    build_toolbox,
    get_datetime,
    system_info,
)
from mcp_gemma.agent.calculator import CalculatorResult, calculate
from mcp_gemma.agent.config import BrainKind
from mcp_gemma.agent.models import AgentCheckpoint, AgentReport, FetchResult, WebSearchResult
from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.sampling import SamplingRequired
from mcp_gemma.rag.names import COLLECTION_HELP, COLLECTION_PATTERN, DEFAULT_COLLECTION
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState

if TYPE_CHECKING:
    from mcp_gemma.agent.brain import Brain

logger = logging.getLogger(__name__)

LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
WEB_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=True)
PathArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4096,
        description="A path under one of the allowed roots (relative paths start at the first root).",
    ),
]


def register(server: MCPServer[AppState], settings: Settings) -> None:
    """Add the agent tools that can work with ``settings`` to ``server``."""
    agent = settings.agent
    roots = settings.allowed_roots

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    )
    async def agent_calculator(
        expression: Annotated[
            str,
            Field(
                min_length=1,
                max_length=500,
                description="Arithmetic: numbers, + - * / // % ** (or ^), parentheses, pi/e/tau and math "
                "functions such as sqrt, log, sin, factorial.",
            ),
        ],
    ) -> CalculatorResult:
        """Evaluate an arithmetic expression safely (no code runs; huge numbers are refused)."""
        return calculate(expression)

    @server.tool(annotations=LOCAL_READ)
    async def agent_get_datetime(
        timezone: Annotated[
            str, Field(max_length=64, description="IANA timezone name, e.g. 'UTC' or 'Europe/Paris'.")
        ] = "UTC",
    ) -> DateTimeResult:
        """The current date and time in a timezone."""
        return get_datetime(timezone)

    @server.tool(annotations=LOCAL_READ)
    async def agent_system_info() -> SystemInfo:
        """OS, CPU count, memory and load of the machine the server runs on."""
        return system_info()

    if roots:

        @server.tool(annotations=LOCAL_READ)
        async def agent_read_file(path: PathArg) -> sandbox.FileContent:
            """Read a UTF-8 text file under the allowed roots (size-limited; symlinks leaving a root are
            refused)."""
            return await sandbox.read_file(path, roots, agent.max_file_bytes)

        @server.tool(annotations=LOCAL_READ)
        async def agent_list_directory(path: PathArg = ".") -> sandbox.DirectoryListing:
            """List a directory under the allowed roots, sorted by name."""
            return await sandbox.list_directory(path, roots, agent.max_list_entries)

        if agent.enable_write_file:

            @server.tool(
                annotations=ToolAnnotations(
                    read_only_hint=False, destructive_hint=True, open_world_hint=False
                )
            )
            async def agent_write_file(
                path: PathArg,
                content: Annotated[
                    str, Field(max_length=agent.max_file_bytes, description="UTF-8 text to write.")
                ],
                overwrite: Annotated[bool, Field(description="Replace the file if it exists.")] = False,
            ) -> sandbox.WriteReport:
                """Write a text file under the allowed roots (parents are created)."""
                return await sandbox.write_file(
                    path, content, roots, agent.max_file_bytes, overwrite=overwrite
                )

    if agent.fetch_allowed_hosts:

        @server.tool(annotations=WEB_READ)
        async def agent_fetch_url(
            url: Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=2048,
                    description="An http(s) URL whose host is on agent.fetch_allowed_hosts.",
                ),
            ],
        ) -> FetchResult:
            """Fetch the visible text of an allow-listed web page (private addresses refused, redirects
            re-checked, size and time limited)."""
            from mcp_gemma.agent import web  # httpx loads on first use, not at start-up

            return await web.fetch_url(url, agent)

    if agent.search_endpoint:

        @server.tool(annotations=WEB_READ)
        async def agent_web_search(
            query: Annotated[str, Field(min_length=1, max_length=2000, description="What to search for.")],
            limit: Annotated[int, Field(ge=1, le=10, description="How many results.")] = 5,
        ) -> WebSearchResult:
            """Search the web through the configured search endpoint."""
            from mcp_gemma.agent import web

            return await web.web_search(query, limit, agent)

    if agent.brain != "local" or settings.gemma.model:
        _register_run_agent(server, settings)


def _pick_brain(ctx: Context[AppState], choice: BrainKind, *, resuming: bool) -> "Brain":
    """The brain a run uses: the local Gemma or the client's model through sampling."""
    from mcp_gemma.agent.brain import ClientBrain, LocalBrain
    from mcp_gemma.server.sampling import ClientSampler, client_supports_sampling, sampled_reply

    session = ctx.request_context.session
    sampling = client_supports_sampling(session)
    llm: Any = getattr(ctx.request_context.lifespan_context, "llm", None)
    if resuming or choice == "client" or (choice == "auto" and sampling):
        if not sampling:
            raise InvalidInputError(
                "brain='client' needs a client that declares the sampling capability; "
                "use brain='local' (the server's Gemma) or a client with a sampling callback"
            )
        responses = ctx.input_responses or {}
        for response in responses.values():
            sampled_reply(response)  # a declined or textless answer fails the call before the loop runs
        return ClientBrain(ClientSampler(session, back_channel=session.can_send_request, responses=responses))
    if llm is None:
        raise ModelUnavailableError(
            "no local model is available in this server; "
            "use brain='client' with a client that supports sampling"
        )
    return LocalBrain(llm)


def _register_run_agent(server: MCPServer[AppState], settings: Settings) -> None:
    agent = settings.agent

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
    )
    async def run_agent(
        ctx: Context[AppState],
        task: Annotated[str, Field(min_length=1, max_length=8000, description="What the agent should do.")],
        tools: Annotated[
            list[str] | None,
            Field(
                max_length=32,
                description="Tools the agent may call, e.g. ['calculator', 'read_file']. Default: every safe "
                "tool offered here (write_file and store_memory only when named).",
            ),
        ] = None,
        max_steps: Annotated[
            int | None,
            Field(ge=1, le=agent.max_steps_limit, description=f"Step budget (default {agent.max_steps})."),
        ] = None,
        max_seconds: Annotated[
            float | None,
            Field(
                gt=0,
                le=agent.max_seconds_limit,
                description=f"Time budget in seconds (default {agent.max_seconds}).",
            ),
        ] = None,
        brain: Annotated[
            BrainKind | None,
            Field(
                description="Who thinks: 'local' (the server's Gemma), 'client' (your model, through MCP "
                f"sampling) or 'auto' (client when it offers sampling, else local). Default {agent.brain!r}."
            ),
        ] = None,
        plan: Annotated[
            bool | None, Field(description="First split the task into sub-goals (one extra model call).")
        ] = None,
        collection: Annotated[
            str,
            Field(
                pattern=COLLECTION_PATTERN,
                description="Knowledge base the agent's search_documents tool searches. " + COLLECTION_HELP,
            ),
        ] = DEFAULT_COLLECTION,
    ) -> AgentReport | InputRequiredResult:
        """Run a ReAct agent (thought → action → observation → reflection) on a task with the server's tools.
        Returns the final answer and the full trace; each step is also sent as a progress notification.
        With brain='client' on a 2026-07-28 connection every step is one input-required round, so allow
        your client at least max_steps + 1 rounds."""
        # Imported on the first run, not at registration: they would delay ``tools/list``.
        from mcp_gemma.agent.react import ReactAgent, first_checkpoint

        state = ctx.request_context.lifespan_context
        services = KnowledgeServices(state.collection(collection), state.memory)
        toolbox = build_toolbox(state.settings, services)
        checkpoint: AgentCheckpoint | None = None
        if ctx.request_state:
            try:
                checkpoint = AgentCheckpoint.model_validate_json(ctx.request_state)
            except ValidationError:
                raise InvalidInputError(
                    "the resumed agent state is unreadable; start the run again"
                ) from None
        chosen = _pick_brain(ctx, brain or agent.brain, resuming=checkpoint is not None)
        if checkpoint is None:
            checkpoint = first_checkpoint(
                agent, toolbox, task, tools, max_steps=max_steps, max_seconds=max_seconds, plan=plan
            )
        loop = ReactAgent(
            chosen, toolbox, ToolEnv(state.settings, services), agent, progress=ctx.report_progress
        )
        try:
            report = await loop.run(checkpoint)
        except SamplingRequired as need:
            # 2026-07-28+: ask the client to sample, then resume from the (SDK-sealed) checkpoint,
            # sealed with the key every replica shares (made in Redis now if this is the first)
            await state.load_request_state_key(create=True)
            return InputRequiredResult(
                input_requests={need.key: need.request}, request_state=checkpoint.model_dump_json()
            )
        logger.info(
            "run_agent: %s after %d steps (%s brain)", report.stop_reason, len(report.steps), report.brain
        )
        return report
