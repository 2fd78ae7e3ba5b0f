"""The web console in a real headless Chromium against a real ``serve --transport http`` process.

Every page loads with no console error and no failed request; a pasted and an uploaded document are
found by all three search modes; a document is deleted from the list; a memory shows under its tier
with its TTL; a chat answer streams in token by token. A screenshot of each page goes to
``$MCP_GEMMA_SCREENSHOTS`` (default ``build/screenshots/``). Needs Debian's ``chromium``
(``apt-get install chromium``) or ``MCP_GEMMA_CHROMIUM`` naming a Chromium binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..integration.conftest import SpawnedServer, server_env

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TOKEN = "console-test-token"
PAGES = ("ingest", "documents", "search", "memory", "chat", "health")
TIMEOUT_MS = 30_000
CHAT_TIMEOUT_MS = 90_000  # first use loads the model (it preloads while the other tests run)


def chromium_binary() -> str | None:
    """``MCP_GEMMA_CHROMIUM``, else Debian's ``chromium`` on the PATH."""
    configured = os.environ.get("MCP_GEMMA_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshots_dir() -> Path:
    path = Path(os.environ.get("MCP_GEMMA_SCREENSHOTS") or REPO / "build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium found: apt-get install chromium (or set MCP_GEMMA_CHROMIUM to its binary)")
    if not Path(binary).is_file():
        pytest.fail(f"MCP_GEMMA_CHROMIUM={binary} is not a file; point it at a Chromium binary")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_models_dir: Path) -> Iterator[SpawnedServer]:
    """One server for the module, with a bearer token, preloading the model for the chat test."""
    data = tmp_path_factory.mktemp("console") / "data"
    env = server_env(
        data,
        MCP_GEMMA_AUTH_TOKEN=TOKEN,
        MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir),
        MCP_GEMMA_GEMMA__PRELOAD="true",
    )
    spawned = SpawnedServer("http", data, env=env)
    yield spawned
    spawned.stop()


@pytest.fixture
def api(server: SpawnedServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=60,
    ) as client:
        yield client


@dataclass
class Console:
    """A console tab and everything that went wrong in it."""

    page: Any
    base: str
    problems: list[str] = field(default_factory=list)

    def open(self, name: str) -> None:
        """Go to a page through its nav link and wait until it has loaded. The first time, the tab
        opens on the ingest page (which calls nothing) and the token is typed in."""
        if not self.page.url.startswith(self.base):
            self.page.goto(f"{self.base}/#ingest")
            self.page.fill("#token", TOKEN)
            self.page.click("#token-form button")
            assert self.page.locator("#token-state").text_content() == "token set for this tab"
        self.page.click(f"[data-nav={name}]")
        self.page.wait_for_selector(f"body[data-ready={name}]", timeout=TIMEOUT_MS)

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(screenshots_dir() / f"{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Any, server: SpawnedServer) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    tab = Console(page, f"http://127.0.0.1:{server.port}")
    page.on("console", lambda m: m.type == "error" and tab.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: tab.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: tab.problems.append(f"request failed: {r.url} {r.failure}"))
    yield tab
    context.close()


def ids_in(column: Any) -> list[str]:
    return [str(x) for x in column.locator("li.hit").evaluate_all("els => els.map(e => e.dataset.docId)")]


def test_console_is_served_with_a_strict_csp_and_no_token(server: SpawnedServer) -> None:
    """The console's files load without the token (a browser cannot send it on navigation); the API
    behind them does not."""
    base = f"http://127.0.0.1:{server.port}"
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="js/app.js"></script>' in page.text
    assert httpx.get(f"{base}/js/app.js", timeout=10).status_code == 200
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 401
    missing = httpx.get(f"{base}/js/nope.js", timeout=10)
    assert missing.status_code == 401, "an unknown path is not public"


def test_every_page_loads_without_errors(console: Console) -> None:
    for name in PAGES:
        console.open(name)
        assert console.page.locator(f"#page-{name}").is_visible()
        assert console.page.locator("#error").is_hidden(), console.page.locator("#error").text_content()
        console.screenshot(name)
    assert console.problems == []


def test_pasted_and_uploaded_documents_are_found_by_every_search_mode(console: Console) -> None:
    page = console.page
    console.open("ingest")
    page.fill("#ingest-text [name=id]", "lighthouse-paste")
    page.fill("#ingest-text [name=metadata]", '{"source": "paste"}')
    page.fill(
        "#ingest-text [name=text]",
        "The lighthouse keeper climbed the spiral stairs every evening to light the great lamp "
        "that warned ships away from the rocks.",
    )
    page.click("#ingest-text button[type=submit]")
    page.wait_for_selector("#ingest-result [data-doc-id=lighthouse-paste][data-status=created]")
    page.set_input_files(
        "#ingest-file [name=file]",
        files=[
            {
                "name": "foghorn.md",
                "mimeType": "text/markdown",
                "buffer": b"# Foghorns\n\nWhen fog rolled over the rocks, the lighthouse sounded its foghorn "
                b"so that sailors could steer clear of the coast.\n",
            }
        ],
    )
    page.fill("#ingest-file [name=id]", "lighthouse-upload")
    page.click("#ingest-file button[type=submit]")
    page.wait_for_selector("#ingest-result [data-doc-id=lighthouse-upload][data-status=created]")
    console.screenshot("ingest-done")

    console.open("search")
    page.fill("#search-form [name=query]", "lighthouse rocks")
    page.click("#search-form button[type=submit]")
    for mode in ("vector", "semantic", "hybrid"):
        column = page.locator(f"#page-search [data-mode={mode}]")
        page.wait_for_selector(f"#page-search [data-mode={mode}][data-state=done]")
        assert sorted(ids_in(column)) == ["lighthouse-paste", "lighthouse-upload"], mode
    console.screenshot("search-results")
    assert console.problems == []


def test_a_document_is_deleted_from_the_list_after_confirmation(console: Console, api: httpx.Client) -> None:
    made = api.post("/v1/documents", json={"id": "to-delete", "text": "A note that is about to be deleted."})
    assert made.status_code in (200, 201), made.text
    page = console.page
    console.open("documents")
    row = page.locator("#docs-rows tr[data-doc-id=to-delete]")
    row.get_by_role("button", name="View").click()
    page.wait_for_selector("#doc-view[data-doc-id=to-delete]:not([hidden])")
    assert page.locator("#doc-view-text").text_content() == "A note that is about to be deleted."

    row.get_by_role("button", name="Delete").click()
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    assert api.get("/v1/documents/to-delete").status_code == 200, "cancel keeps it"

    row.get_by_role("button", name="Delete").click()
    assert "to-delete" in (page.locator("#confirm-text").text_content() or "")
    console.screenshot("documents-confirm")
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    row.wait_for(state="detached")
    gone = api.get("/v1/documents/to-delete")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    console.screenshot("documents")
    assert console.problems == []


def test_documents_are_listed_page_by_page(console: Console, api: httpx.Client) -> None:
    ids = [f"page-{i:02d}" for i in range(21)]
    for doc_id in ids:
        made = api.post(
            "/v1/documents",
            json={"id": doc_id, "text": f"Page test note {doc_id}.", "metadata": {"n": int(doc_id[-2:])}},
        )
        assert made.is_success, made.text
    total = api.get("/v1/documents").json()["total"]
    try:
        page = console.page
        console.open("documents")
        listed = page.locator("#docs-rows tr")
        assert page.locator("#docs-range").text_content() == f"1–20 of {total}"
        assert listed.count() == 20
        # Newest first: the last ingested leads.
        assert listed.first.get_attribute("data-doc-id") == "page-20"
        assert page.locator("#docs-prev").is_disabled()
        page.click("#docs-next")
        page.wait_for_selector(f"#docs-range:text-is('21–{total} of {total}')")
        assert listed.count() == total - 20
        page.click("#docs-prev")
        page.wait_for_selector(f"#docs-range:text-is('1–20 of {total}')")
        assert listed.first.get_attribute("data-doc-id") == "page-20"

        page.fill("#docs-filter [name=filter]", '{"n": {"$gte": 19}}')
        page.click("#docs-filter button")
        page.wait_for_selector("#docs-range:text-is('1–2 of 2')")
        assert listed.evaluate_all("rs => rs.map(r => r.dataset.docId)") == ["page-20", "page-19"]
        assert page.locator("#docs-next").is_disabled()
        console.screenshot("documents-filtered")
        assert console.problems == []
    finally:
        for doc_id in ids:
            api.delete(f"/v1/documents/{doc_id}")


def test_a_stored_memory_shows_under_its_tier_with_its_ttl(console: Console) -> None:
    page = console.page
    console.open("memory")
    page.fill("#memory-agent", "console-agent")
    page.dispatch_event("#memory-agent", "change")
    page.wait_for_selector("#memory-tiers tr[data-tier=working]")
    working = page.locator("#memory-tiers tr[data-tier=working]")
    assert working.locator(".count").text_content() == "0"
    assert working.locator(".ttl").text_content() == "15m"
    assert page.locator("#memory-tiers tr[data-tier=semantic] .ttl").text_content() == "none"
    assert page.locator("#memory-store [name=tier]").input_value() == "short_term", "the server's default"
    assert page.locator("#memory-clear [name=tier]").input_value() == "", "every tier"

    page.fill("#memory-store [name=content]", "The staging database lives on host db-7.")
    page.select_option("#memory-store [name=tier]", "working")
    page.fill("#memory-store [name=tags]", "infra, db")
    page.click("#memory-store button[type=submit]")
    page.wait_for_selector("#memory-tiers tr[data-tier=working] .count:text-is('1')")
    item = page.locator("#memory-items[data-tier=working] li.memory")
    assert item.count() == 1
    assert item.locator("p").first.text_content() == "The staging database lives on host db-7."
    ttl = item.locator(".ttl").text_content() or ""
    assert re.fullmatch(r"expires in (15m|14m( \d+s)?)", ttl), ttl
    console.screenshot("memory")

    page.fill("#memory-recall [name=query]", "where is the staging database?")
    page.click("#memory-recall button[type=submit]")
    hit = page.locator("#memory-recall li.hit").first
    hit.wait_for()
    assert hit.get_attribute("data-tier") == "working"

    page.select_option("#memory-clear [name=tier]", "working")
    page.click("#memory-clear button[type=submit]")
    page.locator("#confirm").get_by_role("button", name="Clear").click()
    page.wait_for_selector("#memory-tiers tr[data-tier=working] .count:text-is('0')")
    assert page.locator("#memory-result").text_content() == "Cleared: 1 from working."
    assert console.problems == []


def test_an_error_shows_the_problem_detail(console: Console) -> None:
    page = console.page
    console.open("ingest")
    page.fill("#ingest-text [name=text]", "some text")
    page.fill("#ingest-text [name=metadata]", "[1, 2]")
    page.click("#ingest-text button[type=submit]")
    error = page.locator("#error")
    error.wait_for()
    assert error.text_content() == 'Metadata must be a JSON object, like {"lang": "en"}'

    page.fill("#ingest-text [name=metadata]", "")
    # An id over the server's 512-character limit (past the field's own maxlength): refused with 422.
    page.eval_on_selector("#ingest-text [name=id]", "e => e.removeAttribute('maxlength')")
    page.fill("#ingest-text [name=id]", "x" * 600)
    page.click("#ingest-text button[type=submit]")
    page.wait_for_selector("#error:text-matches('^422: ')")
    assert error.text_content() == (
        "422: the request does not match the schema: body.id: String should have at most 512 characters"
    )
    assert console.problems and all("422" in p for p in console.problems), console.problems


def test_health_shows_the_components_and_key_metrics(console: Console, api: httpx.Client) -> None:
    components = api.get("/readyz").json()["components"]
    page = console.page
    console.open("health")
    rows = page.locator("#health-components tr")
    assert rows.evaluate_all("rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])") == [
        [c["name"], c["kind"]] for c in components
    ]
    assert [c["kind"] for c in components] == ["embedder", "memory", "vector_index", "llm"]
    version = api.get("/healthz").json()["version"]
    assert page.locator("#health-live").text_content() == f"ok · version {version}"
    redis_up = page.locator("#health-metrics tr[data-metric=mcp_gemma_redis_up] td.num")
    assert redis_up.text_content() == "1"
    names = set(page.locator("#health-metrics tr").evaluate_all("rs => rs.map(r => r.dataset.metric)"))
    assert {"mcp_gemma_info", "mcp_gemma_http_requests_total", "mcp_gemma_component_loaded"} <= names
    assert not any(n.endswith(("_bucket", "_sum", "_count")) for n in names)
    console.screenshot("health")
    assert console.problems == []


def test_a_retrieval_chat_answer_shows_its_evidence(console: Console, api: httpx.Client) -> None:
    text = "The Orbis lab named its solar glider Zephyr. Its wings carry forty square metres of cells."
    assert api.post("/v1/documents", json={"id": "glider", "text": text}).is_success
    try:
        page = console.page
        console.open("chat")
        page.fill("#chat-form [name=text]", "What did the Orbis lab name its solar glider?")
        page.select_option("#chat-form [name=mode]", "retrieval")
        page.check("#chat-form [name=kb]")
        page.click("#chat-send")
        answer = page.locator("#chat-log .turn.assistant[data-state=done]")
        answer.wait_for()
        refs = answer.locator(".evidence li").evaluate_all("els => els.map(e => e.dataset.ref)")
        assert refs and all(re.fullmatch(r"chunk:\d+", ref) for ref in refs), refs
        shown = answer.locator(".text").text_content() or ""
        assert shown.startswith("The Orbis lab named its solar glider Zephyr. [chunk:"), shown
        assert answer.get_attribute("data-tokens") == "0", "retrieval sends the answer whole"
        assert console.problems == []
    finally:
        api.delete("/v1/documents/glider")


@pytest.mark.model
def test_a_chat_answer_streams_in(console: Console) -> None:
    page = console.page
    frames: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_socket)
    console.open("chat")
    page.wait_for_selector("#chat-state:text-is('connected')")
    # The packaged Gemma's greedy answer, six tokens, as the first message of a new session.
    page.fill("#chat-form [name=text]", "What are the three primary colours?")
    page.select_option("#chat-form [name=mode]", "model")
    page.click("#chat-send")
    answer = page.locator("#chat-log .turn.assistant").last
    page.wait_for_selector("#chat-log .turn.assistant[data-state=done]", timeout=CHAT_TIMEOUT_MS)
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "session"
    done = kinds.index("done")
    tokens = [f["text"] for f in frames[:done] if f["type"] == "token"]
    assert tokens == [" Red", ",", " yellow", ",", " and", " blue"], kinds
    assert answer.get_attribute("data-tokens") == "6", "each token updated the page"
    assert frames[done]["answer"] == "Red, yellow, and blue"
    assert answer.locator(".text").text_content() == "Red, yellow, and blue"
    assert page.locator("#chat-log .turn.user").text_content() == "What are the three primary colours?"
    session = frames[0]["session_id"]
    assert page.locator("#chat-session").text_content() == session
    console.screenshot("chat")

    # A reload resumes the session (its id is kept in the tab) with the exchange shown again.
    page.reload()
    page.wait_for_selector("#chat-log .turn.assistant[data-state=history]")
    assert page.locator("#chat-session").text_content() == session
    assert page.locator("#chat-log .turn .text").all_text_contents() == [
        "What are the three primary colours?",
        "Red, yellow, and blue",
    ]

    # Cancel stops an answer that would run to the token budget.
    page.fill("#chat-form [name=text]", "List the first fifty prime numbers separated by commas.")
    page.click("#chat-send")
    page.wait_for_selector("#chat-log .turn.assistant[data-state=streaming]:not([data-tokens='0'])")
    page.click("#chat-cancel")
    page.wait_for_selector("#chat-log .turn.assistant[data-state=cancelled]", timeout=CHAT_TIMEOUT_MS)
    assert page.locator("#chat-send").is_enabled() and page.locator("#chat-cancel").is_disabled()

    # A new session: the server names it, the log starts empty.
    page.click("#chat-new")
    page.wait_for_function(
        "old => !['(new)', old].includes(document.getElementById('chat-session').textContent)", arg=session
    )
    assert page.locator("#chat-log .turn").count() == 0
    assert frames[-1]["type"] == "session" and frames[-1]["history"] == []
    assert page.locator("#chat-session").text_content() == frames[-1]["session_id"]
    assert console.problems == []
