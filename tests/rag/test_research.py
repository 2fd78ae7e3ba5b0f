"""research_query: allow-listed URLs (private addresses, redirects, size limit) and the answer step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_gemma.rag.research import build_prompt, research
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings
from mcp_gemma.state import AppState

pytestmark = pytest.mark.anyio

PAGE = (
    "<html><head><title>Tides</title></head><body><p>Spring tides happen when the sun and the moon line up, "
    "so their pulls add together.</p><script>tracking()</script></body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/page")
            self.end_headers()
            return
        body = (PAGE if self.path == "/page" else "x" * 50_000).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8" if self.path == "/page" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _with(settings: Settings, **rag: Any) -> Settings:
    assert settings.redis_url is not None
    return load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value(),
        namespace=settings.namespace,
        rag=rag,
    )


async def test_private_addresses_are_refused_unless_allowed(settings: Settings, site: str) -> None:
    with anyio.fail_after(180):
        async with Client(create_server(_with(settings, allowed_url_hosts=["127.0.0.1"]))) as client:
            result = await client.call_tool(
                "research_query", {"query": "spring tides", "urls": [f"{site}/page"]}
            )
            assert result.is_error is True
            assert "private, loopback or reserved address" in result.content[0].text  # type: ignore[union-attr]
            result = await client.call_tool("research_query", {"query": "x", "urls": ["file:///etc/passwd"]})
            assert "not an http(s) URL" in result.content[0].text  # type: ignore[union-attr]


async def test_allowed_urls_become_evidence(settings: Settings, site: str) -> None:
    local = _with(settings, allowed_url_hosts=["127.0.0.1"], allow_private_urls=True, url_max_bytes=10_000)
    with anyio.fail_after(180):
        async with Client(create_server(local)) as client:
            await client.call_tool("ingest_document", {"text": "Neap tides are weaker tides.", "id": "neap"})
            result = await client.call_tool(
                "research_query",
                {
                    "query": "when do spring tides happen?",
                    "urls": [f"{site}/page", f"{site}/hop", f"{site}/big"],
                    "answer": False,
                },
            )
            assert result.is_error is False, result.content
            report = result.structured_content
            assert report is not None
            by_source = {e["source"]: e for e in report["evidence"]}
            page = by_source[f"{site}/page"]
            assert page["kind"] == "url"
            assert "sun and the moon line up" in page["text"]
            assert "tracking" not in page["text"]
            assert by_source["neap"]["kind"] == "document"
            assert report["evidence"][0] == page  # the most relevant evidence comes first
            notes = " | ".join(report["notes"])
            assert (
                f"{site}/hop" in notes and "'localhost' is not on the URL allow-list" in notes
            )  # redirect re-checked
            assert "cut at 10,000 bytes" in notes
            assert "memory" not in notes  # this server has a memory service: it was asked


class _Model:
    """A stand-in language model for the answer step, saying ``reply`` ("{ref}" becomes the first
    evidence chunk's id); the real Gemma is tested in tests/integration/test_rag_tools.py."""

    def __init__(self, reply: str = " Because of the moon [chunk:{ref}]. ") -> None:
        self.prompts: list[str] = []
        self.reply = reply

    async def generate(self, prompt: str, *, max_new_tokens: int, stop: Any = ()) -> Any:
        self.prompts.append(prompt)
        ref = prompt.split("Evidence:", 1)[1].split("[chunk:", 1)[1].split("]", 1)[0]
        return type("Result", (), {"text": self.reply.replace("{ref}", ref), "model_id": "stand-in"})()


async def test_answer_cites_evidence_when_a_model_exists(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        await state.rag.ingest("Tides are caused by the pull of the moon.", doc_id="tides")
        model = _Model()
        report = await research(state.rag, "why are there tides?", memory=None, llm=model)
        chunk = report.evidence[0].ref
        assert report.answer == f"Because of the moon [{chunk}]."
        assert (report.answer_kind, report.cited) == ("generated", [chunk])
        assert report.answer_status == "answered by stand-in"
        assert f"[{chunk}] Tides are caused" in model.prompts[0]
        assert "memory recall skipped" in report.notes[0]
        assert build_prompt("q", []).endswith("Question: q\nAnswer:")
    finally:
        await state.close()


TIDES = "Tides are caused by the pull of the moon. Sailors have used tide tables for centuries."


async def test_citations_are_checked_and_an_untrustworthy_answer_is_replaced(settings: Settings) -> None:
    state = await AppState.open(settings)
    try:
        await state.rag.ingest(TIDES, doc_id="tides")
        invented = await research(
            state.rag,
            "why are there tides?",
            memory=None,
            llm=_Model("The moon [chunk:{ref}] [chunk:999999]."),
        )
        chunk = invented.evidence[0].ref
        assert (invented.answer, invented.cited) == (f"The moon [{chunk}].", [chunk])
        for reply, why in [
            ("Because of gravity.", "cited no evidence"),
            ("Gravity [chunk:424242].", "cited no evidence"),
            ("Question: why are there tides?", "copied the prompt"),
            ("   ", "was empty"),
        ]:
            report = await research(state.rag, "why are there tides?", memory=None, llm=_Model(reply))
            assert report.answer_kind == "extractive", reply
            assert report.answer_status.startswith(f"the model's answer {why}"), report.answer_status
            assert report.answer == (
                f"Tides are caused by the pull of the moon. [{chunk}] "
                f"Sailors have used tide tables for centuries. [{chunk}]"
            )
            assert report.cited == [chunk]
    finally:
        await state.close()
