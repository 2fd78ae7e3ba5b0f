"""The tools the agent may call: safe built-ins plus the knowledge base and memory, in-process.

Each tool is an :class:`AgentTool`: a name, a description, a pydantic model of its arguments
(its JSON schema is what the brain is shown and what a call is validated against) and an async
function returning a pydantic model. ``server/tools/agent.py`` exposes the built-ins as MCP tools
under an ``agent_`` prefix, calling the same functions.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from mcp_gemma import __version__
from mcp_gemma.agent import sandbox
from mcp_gemma.agent.calculator import calculate
from mcp_gemma.errors import InvalidInputError

if TYPE_CHECKING:
    from mcp_gemma.memory.service import MemoryService
    from mcp_gemma.rag.service import RagService
    from mcp_gemma.settings import Settings


class AgentServices(Protocol):
    """The services the knowledge tools reach (the server's ``AppState`` is one)."""

    rag: RagService
    memory: MemoryService


@dataclass
class KnowledgeServices:
    """The knowledge base of one collection and the memory: what a run's knowledge tools reach when
    it searches a collection other than the state's default one."""

    rag: RagService
    memory: MemoryService


class DateTimeResult(BaseModel):
    """The current date and time in a timezone."""

    timezone: str
    iso: str = Field(description="ISO 8601 with UTC offset.")
    date: str
    time: str
    weekday: str
    year: int
    month: int
    day: int
    unix: float = Field(description="Seconds since 1970-01-01 UTC.")


class SystemInfo(BaseModel):
    """What the server runs on (no secrets, no environment variables)."""

    os: str
    machine: str
    python: str
    mcp_gemma: str
    cpu_count: int | None
    memory_total_mib: float | None
    load_average: list[float] | None


def clock(zone: ZoneInfo) -> datetime:
    """Now in ``zone``: the date tool's clock (a test pins it, since the time it reads is part of the
    model's next prompt)."""
    return datetime.now(zone)


def get_datetime(timezone: str = "UTC") -> DateTimeResult:
    """Now, in ``timezone`` (an IANA name such as ``Europe/Paris``)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(
            f"unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None
    now = clock(zone)
    return DateTimeResult(
        timezone=timezone,
        iso=now.isoformat(timespec="seconds"),
        date=now.date().isoformat(),
        time=now.time().isoformat(timespec="seconds"),
        weekday=now.strftime("%A"),
        year=now.year,
        month=now.month,
        day=now.day,
        unix=round(now.timestamp(), 3),
    )


def system_info() -> SystemInfo:
    """OS, CPU, memory and load of the server machine."""
    total = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = round(int(line.split()[1]) / 1024, 1)
                    break
    except OSError:
        pass
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return SystemInfo(
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        python=sys.version.split()[0],
        mcp_gemma=__version__,
        cpu_count=os.cpu_count(),
        memory_total_mib=total,
        load_average=load,
    )


# ----------------------------------------------------------------------------- the agent's registry
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalculatorArgs(_Args):
    expression: str = Field(
        min_length=1, max_length=500, description="Arithmetic, e.g. '(17 * 23) + sqrt(2)'."
    )


class DateTimeArgs(_Args):
    timezone: str = Field("UTC", max_length=64, description="IANA timezone name, e.g. 'Europe/Paris'.")


class NoArgs(_Args):
    pass


class PathArgs(_Args):
    path: str = Field(".", min_length=1, max_length=4096, description="Path under an allowed root.")


class WriteArgs(_Args):
    path: str = Field(min_length=1, max_length=4096, description="Path under an allowed root.")
    content: str = Field(description="UTF-8 text to write.")
    overwrite: bool = Field(False, description="Replace an existing file.")


class UrlArgs(_Args):
    url: str = Field(min_length=1, max_length=2048, description="An http(s) URL on the allow-list.")


class QueryArgs(_Args):
    query: str = Field(min_length=1, max_length=2000, description="What to look for.")
    limit: int = Field(5, ge=1, le=10, description="How many results.")


class StoreMemoryArgs(_Args):
    content: str = Field(min_length=1, max_length=10_000, description="The fact to remember.")
    tier: Literal["working", "short_term", "long_term", "episodic", "semantic"] = "short_term"
    importance: float = Field(0.5, ge=0, le=1)


@dataclass(frozen=True)
class ToolEnv:
    """What a tool may reach: the settings and, inside the server, the application's services."""

    settings: Settings
    state: AgentServices | None = None


ToolFn = Callable[[Any, ToolEnv], Awaitable[BaseModel]]


@dataclass(frozen=True)
class AgentTool:
    """A tool the agent can call."""

    name: str
    description: str
    args: type[BaseModel]
    run: ToolFn
    default: bool = True
    """Offered when the caller does not name the tools (the safe ones)."""
    untrusted_output: bool = False
    """The output is text from documents, files or the web: shown to the brain as data."""

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return schema


async def _calculator(a: CalculatorArgs, env: ToolEnv) -> BaseModel:
    return calculate(a.expression)


async def _datetime(a: DateTimeArgs, env: ToolEnv) -> BaseModel:
    return get_datetime(a.timezone)


async def _system_info(a: NoArgs, env: ToolEnv) -> BaseModel:
    return system_info()


async def _read_file(a: PathArgs, env: ToolEnv) -> BaseModel:
    s = env.settings
    return await sandbox.read_file(a.path, s.allowed_roots, s.agent.max_file_bytes)


async def _list_directory(a: PathArgs, env: ToolEnv) -> BaseModel:
    s = env.settings
    return await sandbox.list_directory(a.path, s.allowed_roots, s.agent.max_list_entries)


async def _write_file(a: WriteArgs, env: ToolEnv) -> BaseModel:
    s = env.settings
    return await sandbox.write_file(
        a.path, a.content, s.allowed_roots, s.agent.max_file_bytes, overwrite=a.overwrite
    )


async def _fetch_url(a: UrlArgs, env: ToolEnv) -> BaseModel:
    from mcp_gemma.agent import web  # httpx and its CLI extras load only when the web is used

    return await web.fetch_url(a.url, env.settings.agent)


async def _web_search(a: QueryArgs, env: ToolEnv) -> BaseModel:
    from mcp_gemma.agent import web

    return await web.web_search(a.query, a.limit, env.settings.agent)


async def _search_documents(a: QueryArgs, env: ToolEnv) -> BaseModel:
    rag: RagService | None = getattr(env.state, "rag", None)
    if rag is None:
        raise InvalidInputError("the knowledge base is not available in this server")
    return await rag.hybrid_search(a.query, limit=a.limit)


async def _recall_memory(a: QueryArgs, env: ToolEnv) -> BaseModel:
    memory: MemoryService | None = getattr(env.state, "memory", None)
    if memory is None:
        raise InvalidInputError("agent memory is not available in this server")
    return await memory.recall(a.query, k=a.limit)


async def _store_memory(a: StoreMemoryArgs, env: ToolEnv) -> BaseModel:
    memory: MemoryService | None = getattr(env.state, "memory", None)
    if memory is None:
        raise InvalidInputError("agent memory is not available in this server")
    return await memory.store([a.content], tier=a.tier, importance=a.importance)


def build_toolbox(settings: Settings, state: AgentServices | None = None) -> dict[str, AgentTool]:
    """Every tool the agent can use in this configuration; tools that could only fail are left out."""
    agent = settings.agent
    tools = [
        AgentTool(
            "calculator",
            "Evaluate arithmetic (numbers, + - * / // % **, math functions).",
            CalculatorArgs,
            _calculator,
        ),
        AgentTool("get_datetime", "The current date and time in a timezone.", DateTimeArgs, _datetime),
        AgentTool("system_info", "OS, CPU count, memory and load of the server.", NoArgs, _system_info),
    ]
    if settings.allowed_roots:
        tools += [
            AgentTool(
                "read_file",
                "Read a text file under the allowed folders.",
                PathArgs,
                _read_file,
                untrusted_output=True,
            ),
            AgentTool(
                "list_directory",
                "List a folder under the allowed folders.",
                PathArgs,
                _list_directory,
                untrusted_output=True,
            ),
        ]
        if agent.enable_write_file:
            tools.append(
                AgentTool(
                    "write_file",
                    "Write a text file under the allowed folders.",
                    WriteArgs,
                    _write_file,
                    default=False,
                )
            )
    if agent.fetch_allowed_hosts:
        tools.append(
            AgentTool(
                "fetch_url",
                "Fetch the text of an allow-listed web page.",
                UrlArgs,
                _fetch_url,
                untrusted_output=True,
            )
        )
    if agent.search_endpoint:
        tools.append(
            AgentTool("web_search", "Search the web.", QueryArgs, _web_search, untrusted_output=True)
        )
    if getattr(state, "rag", None) is not None:
        tools.append(
            AgentTool(
                "search_documents",
                "Hybrid search of the knowledge base.",
                QueryArgs,
                _search_documents,
                untrusted_output=True,
            )
        )
    if getattr(state, "memory", None) is not None:
        tools += [
            AgentTool(
                "recall_memory",
                "Recall stored memories by meaning.",
                QueryArgs,
                _recall_memory,
                untrusted_output=True,
            ),
            AgentTool(
                "store_memory",
                "Remember a fact in agent memory.",
                StoreMemoryArgs,
                _store_memory,
                default=False,
            ),
        ]
    return {tool.name: tool for tool in tools}
