"""``mcp-gemma chat``: an interactive chat in the terminal, in-process, with no MCP client.

It opens the same :class:`~mcp_gemma.state.AppState` as the other commands and talks to the chat
service (:mod:`mcp_gemma.chat.service`): the answer streams as it is generated, agent steps show as
they finish, and each exchange is kept in memory, so ``--session ID`` resumes a conversation (the
``/v1/chat`` WebSocket resumes the same sessions). ``--lightweight`` answers from the knowledge base
alone and never loads Gemma. Ctrl-C stops an answer; ``/exit`` or end of input leaves. When stdin
is not a terminal, it reads one message per line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from mcp_gemma.cli.common import fail, run_with_state, settings_from_cli
from mcp_gemma.errors import McpGemmaError

logger = logging.getLogger(__name__)

HELP = """Commands:
  /agent        switch between the model and the agent (ReAct loop with tools)
  /kb on|off    ground answers in the knowledge base (citations [chunk:ID])
  /memory       what memory holds of this session
  /reset        start a new session (the old one stays resumable by its id)
  /help         this list
  /exit         leave (also /quit, Ctrl-D)
Anything else is a message. Ctrl-C stops an answer."""

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded Redis, caches).")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="External Redis URL (default: embedded).")]


def chat(
    lightweight: Annotated[
        bool,
        typer.Option("--lightweight", help="Answer from knowledge-base retrieval alone; never load Gemma."),
    ] = False,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Resume the session with this id.")
    ] = None,
    agent: Annotated[bool, typer.Option("--agent", help="Start in agent mode.")] = False,
    kb: Annotated[
        bool | None, typer.Option("--kb/--no-kb", help="Ground answers in the knowledge base.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Chat with the local Gemma, the agent or the knowledge base in the terminal."""
    overrides: dict[str, Any] = {"gemma": {"preload": False}} if lightweight else {}
    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url, **overrides)
    if lightweight and agent:
        raise fail("--agent needs the model; --lightweight answers from retrieval alone", 2)
    console = Console(highlight=False, soft_wrap=True)
    interactive = sys.stdin.isatty()

    async def call(state: Any) -> None:
        from mcp_gemma.chat.service import ChatService

        service = ChatService(
            state.settings, rag=state.rag, memory=state.memory, llm=None if lightweight else state.llm
        )
        repl = TerminalChat(service, console, read_line(console, interactive), lightweight=lightweight)
        repl.kb = lightweight if kb is None else kb
        repl.mode = "agent" if agent else ("retrieval" if lightweight else "model")
        await repl.run(session)

    try:
        run_with_state(settings, call)
    except KeyboardInterrupt:
        console.print()
        raise typer.Exit(130) from None


def read_line(console: Console, interactive: bool) -> Callable[[], str | None]:
    """A blocking reader of the next message (None at end of input)."""

    def read() -> str | None:
        try:
            if interactive:
                return console.input("[bold green]you>[/] ")
            line = sys.stdin.readline()
            return line if line else None
        except EOFError:
            return None

    return read


class TerminalChat:
    """The read-answer loop over a :class:`~mcp_gemma.chat.service.ChatService`."""

    def __init__(
        self, service: Any, console: Console, read: Callable[[], str | None], *, lightweight: bool
    ) -> None:
        self.service = service
        self.console = console
        self.read = read
        self.lightweight = lightweight
        self.mode = "retrieval" if lightweight else "model"
        self.kb = lightweight
        self.session: Any = None
        self._streamed: list[str] = []

    async def run(self, session_id: str | None) -> None:
        """Open (or resume) the session, then answer lines until /exit or end of input."""
        self.session = await self.service.open_session(session_id)
        self._announce()
        while True:
            line = await read_in_daemon_thread(self.read)
            if line is None:
                self.console.print()
                return
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not await self.command(text):
                    return
                continue
            await self.ask(text)

    def _announce(self) -> None:
        s = self.session
        what = f"resumed, {len(s.history)} earlier exchanges" if s.resumed else "new"
        self.console.print(
            f"[bold]mcp-gemma chat[/] session {s.session_id} ({what}); {self._status()}. /help"
        )
        for ex in s.history:
            self.console.print(f"[dim]you> {escape(ex.user)}[/]")
            self.console.print(f"[dim]{escape(ex.assistant)}[/]")

    def _status(self) -> str:
        return f"mode {self.mode}, knowledge base {'on' if self.kb else 'off'}"

    async def command(self, text: str) -> bool:
        """Run a slash command; False to leave."""
        name, _, arg = text.partition(" ")
        arg = arg.strip().lower()
        say = self.console.print
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            say(HELP, markup=False)
        elif name == "/agent":
            if self.lightweight:
                say("agent mode needs the model; this chat is lightweight (retrieval only)", style="yellow")
            else:
                self.mode = "model" if self.mode == "agent" else "agent"
                say(self._status())
        elif name == "/kb" and arg in ("on", "off"):
            self.kb = arg == "on"
            say(self._status())
        elif name == "/kb":
            say("use /kb on or /kb off", style="yellow")
        elif name == "/reset":
            self.session = await self.service.open_session(None)
            say(f"new session {self.session.session_id}")
        elif name == "/memory":
            await self._show_memory()
        else:
            say(f"unknown command {name}; /help lists them", style="yellow", markup=False)
        return True

    async def _show_memory(self) -> None:
        try:
            report = await self.service.session_memory(self.session)
        except McpGemmaError as exc:
            self.console.print(f"error: {exc}", style="red", markup=False)
            return
        self.console.print(
            f"session {report.session_id} (memory namespace {report.agent_id}): "
            f"{len(report.working)} messages in the working tier, "
            f"{report.episodic_exchanges} exchanges in the episodic tier",
            markup=False,
        )
        for item in report.working[:10]:
            who = next((t.removeprefix("role:") for t in item.tags if t.startswith("role:")), "?")
            self.console.print(f"  [dim]{who}:[/] {escape(item.content[:200])}")

    async def ask(self, text: str) -> None:
        """Answer one message; Ctrl-C cancels it."""
        self._streamed = []
        done: Any = None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_interrupt, scope)
                try:
                    done = await self.service.reply(
                        self.session, text, mode=self.mode, kb=self.kb, emit=self.show
                    )
                except McpGemmaError as exc:
                    self._end_stream()
                    self.console.print(f"error: {exc}", style="red", markup=False)
                except Exception as exc:  # the chat goes on; the details go to the log
                    logger.exception("chat answer failed")
                    self._end_stream()
                    self.console.print(
                        f"error: the answer failed unexpectedly ({type(exc).__name__})",
                        style="red",
                        markup=False,
                    )
                tg.cancel_scope.cancel()
        self._end_stream()
        if done is None:
            if scope.cancel_called:
                self.console.print("(cancelled)", style="yellow")
            return
        if "".join(self._streamed).strip() != done.answer:
            self.console.print(done.answer, markup=False)
        if done.sources:
            self.console.print(f"[dim]sources: {', '.join(done.sources)}[/]")

    async def show(self, event: BaseModel) -> None:
        """Render one event as it comes."""
        kind = getattr(event, "type", "")
        if kind == "token":
            text = str(getattr(event, "text", ""))
            if not self._streamed:
                text = text.lstrip()
            self._streamed.append(text)
            self.console.print(text, end="", markup=False)
        elif kind == "step":
            tool = getattr(event, "tool", None)
            what = f"{tool}({getattr(event, 'arguments', None) or {}})" if tool else "answer"
            observation = str(getattr(event, "observation", ""))[:200]
            self.console.print(
                f"[dim]· step {getattr(event, 'index', '?')}: {escape(what)} → "
                f"{getattr(event, 'status', '')}: {escape(observation)}[/]"
            )
        elif kind == "evidence":
            refs = ", ".join(str(getattr(item, "ref", "")) for item in getattr(event, "items", []))
            self.console.print(f"[dim]evidence: {refs}[/]")

    def _end_stream(self) -> None:
        if self._streamed and not self._streamed[-1].endswith("\n"):
            self.console.print()
            self._streamed.append("\n")


async def read_in_daemon_thread(read: Callable[[], str | None]) -> str | None:
    """``read()`` in a daemon thread: a Ctrl-C at the prompt ends the chat without waiting for a line
    (a worker thread blocked in ``input()`` would hold the process open)."""
    token = anyio.lowlevel.current_token()
    arrived = anyio.Event()
    box: list[str | None] = []

    def work() -> None:
        try:
            box.append(read())
        finally:
            with contextlib.suppress(RuntimeError):  # the chat ended meanwhile
                anyio.from_thread.run_sync(arrived.set, token=token)

    threading.Thread(target=work, name="chat-input", daemon=True).start()
    await arrived.wait()
    return box[0] if box else None


async def _cancel_on_interrupt(scope: anyio.CancelScope) -> None:
    """Ctrl-C during an answer cancels the answer, not the chat."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
