"""``GET /v1/chat``: a chat session over a WebSocket, with the local model, the agent or retrieval.

The protocol is JSON text frames, one object each, told apart by ``type``.

Client to server:

- ``{"type": "message", "text": "…", "mode": "model" | "agent" | "retrieval", "kb": false}``: ask.
  ``mode`` defaults to ``model`` (the local Gemma; ``agent`` runs the ReAct loop with it,
  ``retrieval`` answers with knowledge-base sentences and loads no model); ``kb: true`` grounds the
  answer in knowledge-base passages, which it cites as ``[chunk:ID]``.
- ``{"type": "cancel"}``: stop the answer in progress (ignored when none is).
- ``{"type": "session", "session_id": "…" | null}``: resume a session (``null``: start a new one).
  The query parameter ``?session_id=…`` does the same when connecting.

Server to client:

- ``{"type": "session", "session_id": "…", "history": [{"user", "assistant", "mode", "at"}…],
  "resumed": bool}``: first, on connecting, and after each ``session`` message.
- ``{"type": "evidence", "items": [{"ref": "chunk:12", "text", "score", "source", …}]}``: the
  passages a grounded answer uses.
- ``{"type": "token", "text": "…"}``: more of the answer (model mode).
- ``{"type": "step", "index", "thought", "tool", "arguments", "observation", "status", …}``: one
  agent step (agent mode).
- ``{"type": "done", "answer", "answer_kind", "mode", "sources", "cited", …}``: the answer, cleaned
  (it replaces the streamed tokens); the exchange is now in the session's memory.
- ``{"type": "cancelled"}``: the answer was cancelled; nothing was stored.
- ``{"type": "error", "detail": "…"}``: a frame was refused or a message could not be answered;
  the connection stays open.

One answer streams at a time. The handshake needs the bearer token when the server has one
(``GuardedApp``), a Host this server answers to, and an ``Origin`` (browsers send it) that is the
server's own or in ``http.allowed_origins``; otherwise it is refused before the socket opens. A
browser, which cannot set headers on a WebSocket, offers the subprotocols ``mcp-gemma.chat`` and
``bearer.<the token, base64url>``; the server accepts with ``mcp-gemma.chat`` (never echoing the
token).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Literal
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError
from starlette.types import Message

from mcp_gemma.chat.history import SESSION_ID
from mcp_gemma.chat.models import CancelledEvent, ChatMode, DoneEvent, ErrorEvent
from mcp_gemma.chat.service import ChatService, ChatSession
from mcp_gemma.errors import McpGemmaError
from mcp_gemma.security.principals import LOCAL, principal_of_scope
from mcp_gemma.settings import Settings, is_loopback
from mcp_gemma.state import SharedState

logger = logging.getLogger(__name__)

router = APIRouter(tags=["chat"])
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SUBPROTOCOL = "mcp-gemma.chat"


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageFrame(_Frame):
    type: Literal["message"]
    text: str = Field(max_length=100_000)
    mode: ChatMode = "model"
    kb: StrictBool = False


class CancelFrame(_Frame):
    type: Literal["cancel"]


class SessionFrame(_Frame):
    type: Literal["session"]
    session_id: str | None = Field(None, max_length=64)


ClientFrame = Annotated[MessageFrame | CancelFrame | SessionFrame, Field(discriminator="type")]
FRAMES: TypeAdapter[MessageFrame | CancelFrame | SessionFrame] = TypeAdapter(ClientFrame)


@router.websocket("/v1/chat")
async def chat_socket(
    websocket: WebSocket,
    session_id: Annotated[str | None, Query(max_length=64, pattern=SESSION_ID.pattern)] = None,
) -> None:
    """A chat session; see the module documentation for the messages."""
    settings: Settings = websocket.app.state.settings
    refusal = handshake_refusal(websocket.headers.get("host"), websocket.headers.get("origin"), settings)
    if refusal is not None:
        logger.warning("chat WebSocket refused: %s", refusal)
        await websocket.close(code=1008, reason=refusal)
        return
    principal = principal_of_scope(websocket.scope) or LOCAL
    if not principal.can_write or principal.limited:
        # A chat keeps its history in a memory namespace of its own (chat-<session id>).
        reason = (
            f"principal {principal.name!r} may not chat: a chat stores its history in its own memory "
            "namespace, which needs write access to every namespace"
        )
        logger.warning("chat WebSocket refused: %s", reason)
        await websocket.close(code=1008, reason=reason[:120])
        return
    shared: SharedState = websocket.app.state.shared
    state = shared.current
    if state is None:
        await websocket.close(code=1013, reason="the server is still starting; retry")
        return
    # A client that offered subprotocols (the web console) must get one of them back, or its
    # browser drops the socket.
    offered = websocket.scope.get("subprotocols", ())
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    service = ChatService(state.settings, rag=state.rag, memory=state.memory, llm=state.llm)
    await ChatConnection(websocket, service, settings.chat.max_frame_bytes).run(session_id)


def handshake_refusal(host: str | None, origin: str | None, settings: Settings) -> str | None:
    """Why a WebSocket handshake is refused (None: accept): a Host this server does not answer to
    (DNS rebinding), or an Origin that is neither this server nor allow-listed."""
    if not host or not host_allowed(host.lower(), settings):
        return f"Host {host!r} is not one this server answers to (http.allowed_hosts)"
    if origin is None:
        return None  # not a browser: nothing to check beyond the token
    origin = origin.lower().rstrip("/")
    parts = urlsplit(origin)
    if parts.scheme in ("http", "https") and parts.netloc == host.lower():
        return None
    if origin in (o.lower().rstrip("/") for o in settings.http.allowed_origins):
        return None
    return f"Origin {origin!r} is not allowed (same origin only, or http.allowed_origins)"


def host_allowed(host: str, settings: Settings) -> bool:
    """Whether ``host`` (a Host header, with its port) names this server: a loopback name, the bind
    address, or an ``http.allowed_hosts`` entry (``name:*`` for any port)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    bind = settings.http.host.lower()
    if name in LOOPBACK_NAMES or (not is_loopback(bind) and name in (bind, f"[{bind}]")):
        return True
    for entry in settings.http.allowed_hosts:
        entry = entry.lower()
        if host == entry or (entry.endswith(":*") and name == entry[:-2]):
            return True
    return False


class ChatConnection:
    """One accepted socket: reads frames, runs one answer at a time, sends events."""

    def __init__(self, websocket: WebSocket, service: ChatService, max_frame_bytes: int) -> None:
        self.websocket = websocket
        self.service = service
        self.max_frame_bytes = max_frame_bytes
        self.session: ChatSession | None = None
        self.turn: anyio.CancelScope | None = None
        self._send_lock = anyio.Lock()

    async def send(self, event: BaseModel) -> None:
        """Send one event (the reader and the answer both send; one frame at a time)."""
        async with self._send_lock:
            try:
                await self.websocket.send_text(event.model_dump_json())
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # the client went away
                logger.debug("chat event dropped: %s", exc)

    async def run(self, session_id: str | None) -> None:
        """Open the session, then serve frames until the client goes; a running answer is cancelled then."""
        try:
            self.session = await self.service.open_session(session_id)
        except McpGemmaError as exc:
            await self.send(ErrorEvent(detail=str(exc)))
            await self.websocket.close(code=1011)
            return
        await self.send(self.session.event())
        async with anyio.create_task_group() as tg:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self.handle(message, tg)
            tg.cancel_scope.cancel()

    async def handle(self, message: Message, tg: anyio.abc.TaskGroup) -> None:
        """Act on one frame; a bad frame gets an error event and changes nothing."""
        text = message.get("text")
        if text is None:
            await self.send(ErrorEvent(detail="send JSON objects as text frames"))
            return
        if len(text.encode()) > self.max_frame_bytes:
            await self.send(
                ErrorEvent(detail=f"the frame is larger than chat.max_frame_bytes={self.max_frame_bytes}")
            )
            return
        try:
            frame = FRAMES.validate_python(json.loads(text))
        except json.JSONDecodeError as exc:
            await self.send(ErrorEvent(detail=f"the frame is not JSON: {exc}"))
            return
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'frame'}: {e['msg']}" for e in exc.errors()[:5]
            )
            await self.send(
                ErrorEvent(
                    detail=f"not a chat message ({problems}); the protocol is in the README, section Chat"
                )
            )
            return
        if isinstance(frame, CancelFrame):
            if self.turn is not None:
                self.turn.cancel()
            return
        if self.turn is not None:
            await self.send(
                ErrorEvent(detail="an answer is still streaming; wait for 'done' or send 'cancel'")
            )
            return
        if isinstance(frame, SessionFrame):
            try:
                self.session = await self.service.open_session(frame.session_id)
            except McpGemmaError as exc:
                await self.send(ErrorEvent(detail=str(exc)))
                return
            await self.send(self.session.event())
            return
        self.turn = anyio.CancelScope()
        tg.start_soon(self.answer, frame, self.turn)

    async def answer(self, frame: MessageFrame, scope: anyio.CancelScope) -> None:
        """Answer one message, then send ``done``, ``cancelled`` or ``error``."""
        assert self.session is not None
        done: DoneEvent | None = None
        failure = "the answer failed unexpectedly; see the server log"
        with scope:
            try:
                done = await self.service.reply(
                    self.session, frame.text, mode=frame.mode, kb=frame.kb, emit=self.send
                )
            except McpGemmaError as exc:
                failure = str(exc)
            except Exception:
                logger.exception("chat answer failed")
        self.turn = None
        if done is not None:  # answered and stored, even if a cancel came during the storing
            await self.send(done)
        elif scope.cancel_called:
            await self.send(CancelledEvent())
        else:
            await self.send(ErrorEvent(detail=failure))
