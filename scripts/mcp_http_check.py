"""Real MCP calls over Streamable HTTP against a running server (the container smoke test's client).

Standard library only, so any ``python3`` runs it against a server in a container:

    MCP_GEMMA_AUTH_TOKEN=... python3 scripts/mcp_http_check.py http://127.0.0.1:8765
    MCP_GEMMA_AUTH_TOKEN=... python3 scripts/mcp_http_check.py --search-only http://127.0.0.1:8765

Checks: a request without the token gets 401; initialize; tools/list holds the knowledge-base tools;
ingest_document stores one document (created, 1 chunk, its SHA-256); hybrid_search finds it as the top
hit; reason answers with the local Gemma (its greedy answer). ``--search-only`` does just the search
(after a restart: the document came back from the volume).
Exits 0 when every check passes, 1 with the first failure otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

DOC_ID = "container-smoke"
DOC_TEXT = (
    "The lighthouse keeper on Skerryvore logs the fog signal every night at 21:00 "
    "and refuels the lamp with colza oil."
)
QUERY = "Who refuels the lamp with colza oil?"
PROTOCOL = "2025-06-18"


class CheckFailed(Exception):
    """A check did not hold."""


class Session:
    """One MCP session: JSON-RPC over POST /mcp, answers as JSON or as an SSE stream."""

    def __init__(self, base: str, token: str | None) -> None:
        self.url = base.rstrip("/") + "/mcp"
        self.token = token
        self.session_id: str | None = None
        self.next_id = 1

    def post(self, message: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": PROTOCOL,
        }
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        request = urllib.request.Request(
            self.url, data=json.dumps(message).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                self.session_id = response.headers.get("mcp-session-id", self.session_id)
                body = response.read().decode()
                kind = response.headers.get("content-type", "")
                status = response.status
        except urllib.error.HTTPError as err:
            return err.code, None
        if "id" not in message:
            return status, None
        if kind.startswith("text/event-stream"):
            return status, _from_sse(body, message["id"])
        answer: dict[str, Any] = json.loads(body)
        return status, answer

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        status, answer = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if status != 200 or answer is None:
            raise CheckFailed(f"{method}: HTTP {status}")
        if "error" in answer:
            raise CheckFailed(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.call("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise CheckFailed(f"{name}: {result['content']}")
        structured: dict[str, Any] = result["structuredContent"]
        return structured

    def initialize(self) -> dict[str, Any]:
        params = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "smoke", "version": "0"},
        }
        result = self.call("initialize", params)
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result


def _from_sse(body: str, want: int) -> dict[str, Any]:
    for event in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data:
            message: dict[str, Any] = json.loads(data)
            if message.get("id") == want:
                return message
    raise CheckFailed(f"no answer to request {want} in the event stream")


def expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")
    print(f"ok  {what}: {got!r}")


def search(session: Session) -> None:
    result = session.tool("hybrid_search", {"query": QUERY, "limit": 3})
    top = result["hits"][0]
    expect("hybrid_search top hit", (top["doc_id"], top["text"]), (DOC_ID, DOC_TEXT))
    expect("hybrid_search searched chunks", result["searched_chunks"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the server's base URL, e.g. http://127.0.0.1:8765")
    parser.add_argument("--search-only", action="store_true", help="only search for the stored document")
    args = parser.parse_args()
    token = os.environ.get("MCP_GEMMA_AUTH_TOKEN")
    if not token:
        print("set MCP_GEMMA_AUTH_TOKEN to the server's token", file=sys.stderr)
        return 2
    try:
        status, _ = Session(args.base, None).post(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        )
        expect("without the token", status, 401)
        session = Session(args.base, token)
        info = session.initialize()
        expect("initialize: server name", info["serverInfo"]["name"], "mcp-gemma")
        if not args.search_only:
            names = {tool["name"] for tool in session.call("tools/list", {})["tools"]}
            expect("tools/list has ingest and search", {"ingest_document", "hybrid_search"} <= names, True)
            report = session.tool("ingest_document", {"text": DOC_TEXT, "id": DOC_ID})
            expect(
                "ingest_document",
                (report["id"], report["status"], report["chunks"], report["content_hash"]),
                (DOC_ID, "created", 1, hashlib.sha256(DOC_TEXT.encode()).hexdigest()),
            )
        search(session)
        if not args.search_only:
            # The shipped Gemma 3 270M on the Rust core: its greedy answer (the same as outside a container).
            answer = session.tool(
                "reason", {"question": "What is the capital of France?", "max_new_tokens": 12}
            )
            expect(
                "reason (local Gemma, greedy)",
                (answer["answer"], answer["brain_used"], answer["finish_reason"], answer["model_id"]),
                ("Paris", "local", "stop", "gemma3-270m-gguf"),
            )
    except (CheckFailed, OSError, KeyError, IndexError, ValueError) as err:
        print(f"FAILED {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("MCP over Streamable HTTP: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
