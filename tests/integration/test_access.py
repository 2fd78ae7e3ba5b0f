"""The access lists cover every tool, and the audit log records calls that change data (in-process).

The HTTP side (principals over a served port) is in ``test_security_http.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from mcp import Client

from mcp_gemma.api.access import Caller, audited
from mcp_gemma.api.problems import install_problem_handlers
from mcp_gemma.security.principals import Principal, TokenRegistry, token_digest
from mcp_gemma.security.rights import DOCUMENT_TOOLS, MUTATING_TOOLS, NAMESPACED_TOOLS
from mcp_gemma.server.app import create_server
from mcp_gemma.server.guard import GuardedApp
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState

pytestmark = pytest.mark.anyio

# Not read-only by their annotations, yet not in MUTATING_TOOLS, each for its reason.
WRITES_ONLY_AS_A_SIDE_EFFECT = {
    "recall_memory": "counts the access and refreshes TTLs, which changes no one's data",
    "run_agent": "checked per call: it writes only when its tools include write_file or store_memory",
}


async def test_every_tool_that_writes_or_takes_a_namespace_is_listed(
    settings: Settings, tmp_path: Path
) -> None:
    full = settings.model_copy(
        update={
            "allowed_roots": [tmp_path],
            "agent": settings.agent.model_copy(
                update={"enable_write_file": True, "fetch_allowed_hosts": ["example.org"]}
            ),
        }
    )
    with anyio.fail_after(60):
        async with Client(create_server(full)) as client:
            tools = (await client.list_tools()).tools
    names = {tool.name for tool in tools}
    assert names >= MUTATING_TOOLS, "no stale names in the list"
    assert names >= NAMESPACED_TOOLS
    assert names >= DOCUMENT_TOOLS
    for tool in tools:
        notes = tool.annotations
        writes = notes is None or notes.read_only_hint is not True
        if writes:
            assert tool.name in MUTATING_TOOLS or tool.name in WRITES_ONLY_AS_A_SIDE_EFFECT, tool.name
        else:
            assert tool.name not in MUTATING_TOOLS, f"{tool.name} says it is read-only"
        if "agent_id" in tool.input_schema.get("properties", {}):
            assert tool.name in NAMESPACED_TOOLS, tool.name
        if "collection" in tool.input_schema.get("properties", {}):
            # reason and run_agent use their collection only when they search (checked per call)
            assert tool.name in DOCUMENT_TOOLS or tool.name in ("reason", "run_agent"), tool.name
        elif tool.name in DOCUMENT_TOOLS:
            raise AssertionError(f"{tool.name} has no collection argument")


async def test_audit_log_records_calls_that_change_data(settings: Settings) -> None:
    with anyio.fail_after(120):
        async with Client(create_server(settings)) as client:
            ingested = await client.call_tool("ingest_document", {"text": "Audited text about owls."})
            assert ingested.structured_content is not None
            doc_id = ingested.structured_content["id"]
            await client.call_tool("search_documents", {"query": "owls"})
            deleted = await client.call_tool("delete_document", {"id": doc_id})
            assert not deleted.is_error
            stored = await client.call_tool("store_memory", {"content": "private fact", "agent_id": "team-1"})
            assert stored.structured_content is not None
            memory_id = stored.structured_content["ids"][0]
            refused = await client.call_tool("clear_memory", {"agent_id": "team-1", "tier": "working"})
            assert refused.is_error
    lines = (settings.data_dir / "audit.log").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["principal"], r["transport"], r["action"], r["ids"], r["result"]) for r in records] == [
        ("local", "stdio", "ingest_document", [f"doc:{doc_id}"], "ok"),
        ("local", "stdio", "delete_document", [f"doc:{doc_id}"], "ok"),
        ("local", "stdio", "store_memory", ["agent:team-1", f"memory:{memory_id}"], "ok"),
        ("local", "stdio", "clear_memory", ["agent:team-1", "tier:working"], "error:InvalidInputError"),
    ]
    assert "owls" not in "".join(lines) and "private fact" not in "".join(lines)


async def test_rest_routes_get_the_caller_and_audit_through_one_helper(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        await state.rag.ingest("A document to delete.", doc_id="x1")
        api = FastAPI()
        install_problem_handlers(api)

        @api.delete("/v1/documents/{doc_id}")
        async def delete(doc_id: str, caller: Caller) -> dict[str, bool]:
            caller.require_write("delete_document")
            async with audited(state, caller, "delete_document", [f"doc:{doc_id}"]):
                report = await state.rag.delete_document(doc_id)
            return {"deleted": report.deleted}

        tokens = TokenRegistry(
            [
                (token_digest(b"writer-token-0123456789"), Principal("writer")),
                (token_digest(b"reader-token-0123456789"), Principal("reader", "read")),
            ]
        )
        app = GuardedApp(api, registry=tokens)
        transport = httpx.ASGITransport(app=app, client=("10.1.1.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            reader = await http.delete(
                "/v1/documents/x1", headers={"authorization": "Bearer reader-token-0123456789"}
            )
            writer = await http.delete(
                "/v1/documents/x1", headers={"authorization": "Bearer writer-token-0123456789"}
            )
            again = await http.delete(
                "/v1/documents/x1", headers={"authorization": "Bearer writer-token-0123456789"}
            )
        assert reader.status_code == 403
        assert reader.json()["detail"] == (
            "principal 'reader' has read-only access: delete_document changes data; "
            "use a token whose access is 'write'"
        )
        assert writer.status_code == 200 and writer.json() == {"deleted": True}
        assert again.status_code == 404
    finally:
        await state.close()
    records = [
        json.loads(line)
        for line in (settings.data_dir / "audit.log").read_text(encoding="utf-8").splitlines()
    ]
    assert [(r["principal"], r["transport"], r["action"], r["ids"], r["result"]) for r in records] == [
        ("writer", "rest", "delete_document", ["doc:x1"], "ok"),
        ("writer", "rest", "delete_document", ["doc:x1"], "error:NotFoundError"),
    ]
