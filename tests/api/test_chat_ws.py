"""``GET /v1/chat`` against a real server process: streaming, grounding, cancelling, resuming, refusals.

The model tests use the packaged Gemma 3 270M (greedy, so its answers are exact).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws
from mcp import Client

from tests.integration.conftest import SpawnedServer, server_env

pytestmark = pytest.mark.anyio

GLIDER = (
    "The Orbis lab named its solar glider Zephyr. The glider first flew in March 2031 over the Atacama "
    "desert. Its wings carry forty square metres of solar cells."
)
GLIDER_QUESTION = "What did the Orbis lab name its solar glider?"
TIMEOUT = 60.0
MODEL_TIMEOUT = 300.0  # the first model answer converts and loads the checkpoint


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, shared_models_dir: Path) -> Iterator[SpawnedServer]:
    """One server for the chat tests; its Gemma uses the session's conversion cache, its agent small
    budgets (3 steps of at most 40 tokens)."""
    data = tmp_path_factory.mktemp("chat") / "data"
    server = SpawnedServer(
        "http",
        data,
        env=server_env(
            data,
            MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir),
            MCP_GEMMA_AGENT__MAX_STEPS="3",
            MCP_GEMMA_AGENT__MAX_NEW_TOKENS="40",
        ),
    )
    yield server
    server.stop()


def base(server: SpawnedServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@asynccontextmanager
async def chat(
    server: SpawnedServer, query: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[AsyncWebSocketSession]:
    async with (
        httpx.AsyncClient(headers=headers) as http,
        aconnect_ws(f"{base(server)}/v1/chat{query}", http) as ws,
    ):
        yield ws


async def receive(ws: AsyncWebSocketSession, within: float = TIMEOUT) -> dict[str, Any]:
    with anyio.fail_after(within):
        event: dict[str, Any] = await ws.receive_json()
    return event


async def until(ws: AsyncWebSocketSession, *kinds: str, within: float = TIMEOUT) -> list[dict[str, Any]]:
    """Events up to and including the first of one of ``kinds``."""
    events = []
    with anyio.fail_after(within):
        while True:
            events.append(await receive(ws, within))
            if events[-1]["type"] in kinds:
                return events


async def ingest(server: SpawnedServer, text: str, doc_id: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with Client(server.url) as client:
            result = await client.call_tool("ingest_document", {"text": text, "id": doc_id})
    assert not result.is_error, result.content


async def test_retrieval_answers_from_the_knowledge_base_and_the_session_resumes(
    chat_server: SpawnedServer,
) -> None:
    await ingest(chat_server, GLIDER, "glider")
    async with chat(chat_server) as ws:
        opened = await receive(ws)
        assert (opened["type"], opened["history"], opened["resumed"]) == ("session", [], False)
        sid = opened["session_id"]
        await ws.send_json({"type": "message", "text": GLIDER_QUESTION, "mode": "retrieval", "kb": True})
        evidence, done = await until(ws, "done")
        assert evidence["type"] == "evidence"
        first = evidence["items"][0]
        assert (first["kind"], first["source"], first["text"]) == ("document", "glider", GLIDER)
        ref = first["ref"]
        assert ref.startswith("chunk:")
        assert done == {
            **done,
            "type": "done",
            "answer": f"The Orbis lab named its solar glider Zephyr. [{ref}] "
            f"Its wings carry forty square metres of solar cells. [{ref}]",
            "answer_kind": "extractive",
            "mode": "retrieval",
            "cited": [ref],
            "model_id": None,
            "tokens_out": 0,
        }
        assert done["sources"][0] == ref

        # Bad frames are answered with an error, and the socket goes on working.
        await ws.send_text("not json")
        assert (await receive(ws))["detail"].startswith("the frame is not JSON")
        await ws.send_json({"type": "shout", "text": "hi"})
        assert "not a chat message" in (await receive(ws))["detail"]
        await ws.send_json({"type": "message", "text": "   ", "mode": "retrieval", "kb": True})
        assert (await receive(ws)) == {"type": "error", "detail": "the message is empty; say something"}
        await ws.send_json({"type": "message", "text": "x" * 4001, "mode": "retrieval", "kb": True})
        assert "more than chat.max_message_chars=4,000" in (await receive(ws))["detail"]
        await ws.send_json({"type": "message", "text": GLIDER_QUESTION, "mode": "retrieval", "kb": False})
        assert "answers from the knowledge base only" in (await receive(ws))["detail"]
        await ws.send_json({"type": "cancel"})  # nothing streams: ignored
        await ws.send_json({"type": "session", "session_id": None})
        fresh = await receive(ws)
        assert (fresh["type"], fresh["history"]) == ("session", [])
        assert fresh["session_id"] != sid
        await ws.send_json({"type": "session", "session_id": "../etc"})
        assert "a session id is 1 to 64 letters" in (await receive(ws))["detail"]

    async with chat(chat_server, f"?session_id={sid}") as ws:
        resumed = await receive(ws)
    assert (resumed["session_id"], resumed["resumed"]) == (sid, True)
    assert [(h["user"], h["assistant"], h["mode"]) for h in resumed["history"]] == [
        (GLIDER_QUESTION, done["answer"], "retrieval")
    ]


@pytest.mark.model
async def test_model_answers_stream_and_ground_in_the_knowledge_base(chat_server: SpawnedServer) -> None:
    await ingest(chat_server, GLIDER, "glider")
    async with chat(chat_server) as ws:
        sid = (await receive(ws))["session_id"]
        await ws.send_json({"type": "message", "text": "What is the capital of France?"})
        events = await until(ws, "done", "error", within=MODEL_TIMEOUT)
        done = events[-1]
        assert (done["type"], done["answer"], done["answer_kind"], done["finish_reason"]) == (
            "done",
            "Paris",
            "generated",
            "stop",
        )
        tokens = [e["text"] for e in events[:-1]]
        assert {e["type"] for e in events[:-1]} == {"token"}
        assert "".join(tokens).strip() == "Paris"

        await ws.send_json({"type": "message", "text": GLIDER_QUESTION, "kb": True})
        events = await until(ws, "done", "error", within=MODEL_TIMEOUT)
        evidence, done = events[0], events[-1]
        ref = evidence["items"][0]["ref"]
        assert evidence["items"][0]["source"] == "glider"
        assert (done["answer"], done["sources"][0], done["answer_kind"]) == ("Zephyr", ref, "generated")
    async with chat(chat_server, f"?session_id={sid}") as ws:
        history = (await receive(ws))["history"]
    assert [(h["user"], h["assistant"]) for h in history] == [
        ("What is the capital of France?", "Paris"),
        (GLIDER_QUESTION, "Zephyr"),
    ]


@pytest.mark.model
async def test_cancel_stops_the_answer_and_the_socket_answers_the_next_message(
    chat_server: SpawnedServer,
) -> None:
    async with chat(chat_server) as ws:
        sid = (await receive(ws))["session_id"]
        # The greedy answer to this runs to the token budget (hundreds of tokens): cancel after the first.
        await ws.send_json(
            {"type": "message", "text": "List the first fifty prime numbers separated by commas."}
        )
        first = await receive(ws, MODEL_TIMEOUT)
        assert first["type"] == "token"
        await ws.send_json({"type": "message", "text": "And now?"})
        assert "still streaming" in (await until(ws, "error"))[-1]["detail"]
        await ws.send_json({"type": "cancel"})
        events = await until(ws, "cancelled", "done")
        assert events[-1] == {"type": "cancelled"}
        assert {e["type"] for e in events[:-1]} <= {"token"}

        await ws.send_json({"type": "message", "text": "What is the capital of France?"})
        done = (await until(ws, "done", "error", within=MODEL_TIMEOUT))[-1]
        assert (done["type"], done["answer"]) == ("done", "Paris")
    async with chat(chat_server, f"?session_id={sid}") as ws:
        history = (await receive(ws))["history"]
    assert [(h["user"], h["assistant"]) for h in history] == [("What is the capital of France?", "Paris")]


async def test_handshakes_from_other_origins_or_hosts_are_refused(chat_server: SpawnedServer) -> None:
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"host": "evil.example"},
        {"host": f"evil.example:{chat_server.port}", "origin": f"http://evil.example:{chat_server.port}"},
    ):
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with chat(chat_server, headers=headers):
                pass
        assert refused.value.response.status_code == 403, headers
    async with chat(chat_server, headers={"origin": base(chat_server)}) as ws:
        assert (await receive(ws))["type"] == "session"
        # A frame past chat.max_frame_bytes (64 KiB) closes the socket with 1009 (message too big).
        await ws.send_text(json.dumps({"type": "message", "text": "x" * 70_000}))
        with pytest.raises(WebSocketDisconnect) as closed:
            await receive(ws)
    assert closed.value.code == 1009


async def test_the_bearer_token_guards_the_socket_and_retrieval_loads_no_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = SpawnedServer("http", data, env=server_env(data, MCP_GEMMA_AUTH_TOKEN="tok-123"))
    authed = {"authorization": "Bearer tok-123"}
    try:
        for headers in (None, {"authorization": "Bearer nope"}):
            with pytest.raises(WebSocketUpgradeError) as refused:
                async with chat(server, headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            assert refused.value.response.headers["www-authenticate"] == 'Bearer realm="mcp-gemma"'
        async with chat(server, headers=authed) as ws:
            assert (await receive(ws))["type"] == "session"
            await ws.send_json({"type": "message", "text": GLIDER_QUESTION, "mode": "retrieval", "kb": True})
            done = await receive(ws)
            assert (done["type"], done["answer_kind"], done["sources"]) == ("done", "none", [])
            assert done["answer"] == "Nothing in the knowledge base matches that."
        async with httpx.AsyncClient(headers=authed) as http:
            ready = (await http.get(f"{base(server)}/readyz", timeout=TIMEOUT)).json()
        gemma = next(c for c in ready["components"] if c["kind"] == "llm")
        assert gemma["loaded"] is False
    finally:
        server.stop()


@pytest.mark.model
async def test_agent_mode_streams_the_steps_of_the_react_loop(chat_server: SpawnedServer) -> None:
    async with chat(chat_server) as ws:
        await receive(ws)
        await ws.send_json({"type": "message", "text": "What is 12 * 7?", "mode": "agent"})
        events = await until(ws, "done", "error", within=MODEL_TIMEOUT)
    # The local brain decodes each action under the offered tools' grammar (llm/constrained.py), so
    # the 270M base model's first action is a valid call of a registered tool; which tool, and what
    # follows within this test's 40-token budget per step, depends on the session's history (other
    # tests of the module chat first), so the machinery is asserted: steps streamed in order, before
    # the answer, each with the brain's time.
    *steps, done = events
    assert [s["index"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0]["status"] == "ok"
    assert steps[0]["tool"] in {
        "calculator",
        "get_datetime",
        "system_info",
        "search_documents",
        "recall_memory",
    }
    assert all(s["type"] == "step" and s["brain_seconds"] > 0 for s in steps)
    assert (done["type"], done["answer_kind"], done["model_id"]) == ("done", "agent", "gemma3-270m-gguf")
