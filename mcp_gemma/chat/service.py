"""The chat service: one conversation at a time with the local model, the agent, or retrieval alone.

A message is answered in one of three modes: ``model`` (the local Gemma, prompted the way its
checkpoint expects, with the last exchanges of the session and, on request, knowledge-base passages
it cites as ``[chunk:ID]``; tokens stream), ``agent`` (the ReAct loop with the local brain; its steps
stream) and ``retrieval`` (the evidence sentences closest to the message, never loading a model).
Exchanges are kept in the tiered memory (:mod:`mcp_gemma.chat.history`), so a session resumes by id.
Cancelling the calling task stops the generation (the LLM service's cancellation).

No protocol here: the ``/v1/chat`` WebSocket and ``mcp-gemma chat`` turn the events into theirs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
from pydantic import BaseModel

from mcp_gemma.agent.brain import LocalBrain
from mcp_gemma.agent.builtin_tools import ToolEnv, build_toolbox
from mcp_gemma.agent.react import ReactAgent, check_tools, new_checkpoint
from mcp_gemma.chat.history import SESSION_ID, ChatHistory
from mcp_gemma.chat.models import (
    ChatExchange,
    ChatMode,
    DoneEvent,
    EvidenceEvent,
    SessionEvent,
    SessionMemory,
    StepEvent,
    TokenEvent,
)
from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.base import ChatMessage
from mcp_gemma.llm.reason import (
    COMPLETION_STOPS,
    FEW_SHOT,
    SYSTEM_PROMPT,
    answer_locally,
    build_prompt,
    clean_answer,
    completion_prompt,
)
from mcp_gemma.llm.service import LLMService
from mcp_gemma.memory.service import MemoryService
from mcp_gemma.rag.models import Evidence
from mcp_gemma.rag.research import check_citations, extractive_answer, research
from mcp_gemma.rag.service import RagService
from mcp_gemma.settings import Settings

Emit = Callable[[BaseModel], Awaitable[None]]
AGENT_TASK_CHARS = 8_000
NO_EVIDENCE = "Nothing in the knowledge base matches that."


@dataclass
class ChatSession:
    """One conversation: its id and its exchanges so far, oldest first."""

    session_id: str
    history: list[ChatExchange] = field(default_factory=list)
    resumed: bool = False

    def event(self) -> SessionEvent:
        """The ``session`` message that announces it."""
        return SessionEvent(session_id=self.session_id, history=list(self.history), resumed=self.resumed)


class ChatService:
    """Answers chat messages with the services of one process; holds nothing between calls but them."""

    def __init__(
        self, settings: Settings, *, rag: RagService, memory: MemoryService, llm: LLMService | None
    ) -> None:
        self.settings = settings
        self.rag = rag
        self.memory = memory
        self.llm = llm
        """None in lightweight mode: only ``retrieval`` answers, and no model ever loads."""
        self.history = ChatHistory(memory, settings.chat.agent_id_prefix, settings.chat.history_limit)

    # ---------------------------------------------------------------------------------- sessions
    async def open_session(self, session_id: str | None = None) -> ChatSession:
        """A new session, or the one named ``session_id`` with its exchanges loaded from memory."""
        if session_id is None:
            return ChatSession(uuid.uuid4().hex)
        if not SESSION_ID.match(session_id):
            raise InvalidInputError(
                "a session id is 1 to 64 letters, digits, '-' or '_' (starting with a letter or digit)"
            )
        history = await self.history.load(session_id)
        return ChatSession(session_id, history, resumed=bool(history))

    async def session_memory(self, session: ChatSession) -> SessionMemory:
        """What memory holds of ``session``."""
        return await self.history.overview(session.session_id)

    # ---------------------------------------------------------------------------------- answering
    def check_message(self, text: str, mode: ChatMode, kb: bool) -> str:
        """The message, stripped, or an error saying why it cannot be answered here."""
        limit = self.settings.chat.max_message_chars
        if len(text) > limit:
            raise InvalidInputError(
                f"the message has {len(text):,} characters, more than chat.max_message_chars={limit:,}"
            )
        text = text.strip()
        if not text:
            raise InvalidInputError("the message is empty; say something")
        if mode == "retrieval" and not kb:
            raise InvalidInputError(
                "retrieval mode answers from the knowledge base only; turn the knowledge base on"
            )
        if mode != "retrieval" and self.llm is None:
            raise ModelUnavailableError(
                f"{mode} mode needs the local model, and this chat runs without it (lightweight); "
                "use retrieval mode"
            )
        return text

    async def reply(
        self, session: ChatSession, text: str, *, mode: ChatMode, kb: bool, emit: Emit
    ) -> DoneEvent:
        """Answer ``text`` in ``session``, sending tokens, steps and evidence to ``emit`` as they come;
        the exchange is stored once answered (a cancelled answer stores nothing)."""
        started = time.perf_counter()
        text = self.check_message(text, mode, kb)
        evidence = await self._evidence(text) if kb else []
        if evidence:
            await emit(EvidenceEvent(items=evidence))
        if mode == "retrieval":
            done = await self._extractive(text, evidence)
        elif mode == "agent":
            done = await self._agent(session, text, evidence, emit)
        else:
            done = await self._generate(session, text, evidence, emit)
        done.seconds = round(time.perf_counter() - started, 4)
        with anyio.CancelScope(shield=True):  # answered: store the whole exchange or none of it
            await self.history.add(session.session_id, text, done.answer, mode)
        session.history.append(ChatExchange(user=text, assistant=done.answer, mode=mode, at=_now()))
        del session.history[: -self.settings.chat.history_limit]  # a long session stays bounded here too
        return done

    async def _evidence(self, text: str) -> list[Evidence]:
        report = await research(
            self.rag, text, limit=self.settings.chat.kb_top_k, use_memory=False, llm=None, answer=False
        )
        return [ev for ev in report.evidence if ev.kind == "document"]

    async def _extractive(self, text: str, evidence: Sequence[Evidence]) -> DoneEvent:
        answer, cited = await extractive_answer(self.rag, text, evidence) if evidence else ("", [])
        return DoneEvent(
            answer=answer or NO_EVIDENCE,
            answer_kind="extractive" if answer else "none",
            mode="retrieval",
            sources=[ev.ref for ev in evidence],
            cited=cited,
            seconds=0.0,
        )

    async def _generate(
        self, session: ChatSession, text: str, evidence: Sequence[Evidence], emit: Emit
    ) -> DoneEvent:
        llm = self._model()
        passages = [(int(ev.ref.removeprefix("chunk:")), ev.text) for ev in evidence]
        recent = (
            session.history[-self.settings.chat.history_turns :] if self.settings.chat.history_turns else []
        )
        n = self.settings.chat.max_new_tokens
        llm.validate(completion_chat_prompt(recent, text, passages), n, 0.0, 1.0)
        model = await llm.ensure_loaded()
        prompt: str | list[ChatMessage]
        stops: tuple[str, ...]
        if model.info.prompt_style == "chat":
            prompt, stops = chat_template_messages(recent, text, passages), ()
        else:
            prompt, stops = completion_chat_prompt(recent, text, passages), COMPLETION_STOPS
        sent = 0

        async def stream(so_far: str) -> None:
            nonlocal sent
            piece, sent = so_far[sent:], len(so_far)
            if piece:
                await emit(TokenEvent(text=piece))

        result = await answer_locally(
            llm, prompt, [cid for cid, _ in passages], max_new_tokens=n, stop=stops, progress=stream
        )
        answer, cited, _copied = check_citations(clean_answer(result.answer), evidence)
        return DoneEvent(
            answer=answer,
            answer_kind="generated",
            mode="model",
            sources=[ev.ref for ev in evidence],
            cited=cited,
            model_id=result.model_id,
            tokens_out=result.tokens_out,
            finish_reason=result.finish_reason,
            seconds=0.0,
        )

    async def _agent(
        self, session: ChatSession, text: str, evidence: Sequence[Evidence], emit: Emit
    ) -> DoneEvent:
        llm = self._model()
        agent = self.settings.agent
        toolbox = build_toolbox(self.settings, self)
        cp = new_checkpoint(
            agent_task(session.history[-self.settings.chat.history_turns :], text, evidence),
            check_tools(None, toolbox),
            max_steps=agent.max_steps,
            max_seconds=agent.max_seconds,
            plan=False,
        )
        shown = 0

        async def on_step(done: float, total: float | None, message: str) -> None:
            nonlocal shown
            for step in cp.steps[shown:]:
                await emit(StepEvent(**step.model_dump()))
            shown = len(cp.steps)

        loop = ReactAgent(LocalBrain(llm), toolbox, ToolEnv(self.settings, self), agent, progress=on_step)
        report = await loop.run(cp)
        answer, cited, _copied = check_citations(report.answer or "", evidence)
        return DoneEvent(
            answer=answer,
            answer_kind="agent",
            mode="agent",
            sources=[ev.ref for ev in evidence],
            cited=cited,
            model_id=llm.settings.model,
            stop_reason=report.stop_reason,
            seconds=0.0,
        )

    def _model(self) -> LLMService:
        if self.llm is None:  # check_message refuses this first; kept for the type checker
            raise ModelUnavailableError("this chat runs without the local model (lightweight)")
        return self.llm


def _one_line(text: str) -> str:
    return " ".join(text.split())


def completion_chat_prompt(
    history: Sequence[ChatExchange], question: str, passages: Sequence[tuple[int, str]]
) -> str:
    """Reason's few-shot prompt for a base checkpoint, with the session's last exchanges as earlier
    questions and answers (one line each), then the grounded question."""
    earlier = "".join(
        f"Question: {_one_line(ex.user)}\nAnswer: {_one_line(ex.assistant)}\n\n" for ex in history
    )
    return FEW_SHOT + earlier + completion_prompt(question, None, passages).removeprefix(FEW_SHOT)


def chat_template_messages(
    history: Sequence[ChatExchange], question: str, passages: Sequence[tuple[int, str]]
) -> list[ChatMessage]:
    """The conversation an instruction-tuned checkpoint's chat template renders."""
    messages = [ChatMessage(role="system", content=SYSTEM_PROMPT)]
    for ex in history:
        messages += [
            ChatMessage(role="user", content=ex.user),
            ChatMessage(role="assistant", content=ex.assistant),
        ]
    grounded = build_prompt(question, None, passages).removesuffix("\nAnswer:")
    return [*messages, ChatMessage(role="user", content=grounded)]


def agent_task(history: Sequence[ChatExchange], question: str, evidence: Sequence[Evidence]) -> str:
    """The agent's task: the message, after the conversation so far and the knowledge-base passages."""
    parts = []
    if history:
        parts.append(
            "Conversation so far:\n"
            + "\n".join(f"User: {_one_line(ex.user)}\nAssistant: {_one_line(ex.assistant)}" for ex in history)
        )
    if evidence:
        parts.append("Knowledge base:\n" + "\n".join(f"[{ev.ref}] {_one_line(ev.text)}" for ev in evidence))
    parts.append(question if not parts else f"Now answer: {question}")
    task = "\n\n".join(parts)
    return task if len(task) <= AGENT_TASK_CHARS else task[-AGENT_TASK_CHARS:]


def _now() -> datetime:
    return datetime.now(UTC)
