"""``/v1/reason`` (JSON and SSE) and ``/v1/agent/runs`` (state and SSE steps) with the real Gemma 270M."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SpawnedServer

from .conftest import base_url, spawn

pytestmark = pytest.mark.model

QUESTION = {"question": "What is the capital of France?", "context": "Paris is the capital of France."}


@pytest.fixture(scope="module")
def model_server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, shared_models_dir: Path
) -> Iterator[SpawnedServer]:
    server = spawn(
        Path(tmp_path_factory.mktemp("api-model")) / "data",
        redis_url,
        MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir),
        MCP_GEMMA_AGENT__MAX_NEW_TOKENS="40",
    )
    yield server
    server.stop()


def events(response: httpx.Response) -> Iterator[tuple[str, str | None, Any]]:
    """(event, id, data) of a Server-Sent Events response, as they arrive."""
    name, ident, data = "message", None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line and data:
            yield name, ident, json.loads("\n".join(data))
            name, ident, data = "message", None, []


def test_reason_answers_as_json_and_as_a_token_stream(model_server: SpawnedServer) -> None:
    with httpx.Client(base_url=base_url(model_server), timeout=600) as http:
        r = http.post("/v1/reason", json={**QUESTION, "max_new_tokens": 8})
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["answer"], out["brain_used"], out["model_id"]) == ("Paris", "local", "gemma3-270m-gguf")
        assert (out["finish_reason"], out["prompt_style"]) == ("stop", "completion")
        with http.stream("POST", "/v1/reason", json={**QUESTION, "max_new_tokens": 8, "stream": True}) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
            got = list(events(s))
        kinds = [k for k, _, _ in got]
        assert kinds[-1] == "result" and set(kinds[:-1]) == {"token"}
        streamed = "".join(d["text"] for k, _, d in got if k == "token")
        assert streamed.strip() == "Paris"
        assert got[-1][2] == {**out, "seconds": got[-1][2]["seconds"]}  # the same greedy result
        refused = http.post("/v1/reason", json={**QUESTION, "max_new_tokens": 10**9, "stream": True})
        assert (
            refused.status_code == 422 and "max_new_tokens=1000000000 is outside" in refused.json()["detail"]
        )
        # Structured output: the same grammar-constrained answer as the reason tool gives.
        schema = {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "country": {"enum": ["France", "Spain"]},
            },
            "required": ["city", "country"],
        }
        shaped = http.post("/v1/reason", json={**QUESTION, "json_schema": schema, "max_new_tokens": 40})
        assert shaped.status_code == 200, shaped.text
        assert shaped.json()["structured"] == {"city": "Paris", "country": "France"}
        both = http.post("/v1/reason", json={**QUESTION, "json_schema": schema, "stream": True})
        assert both.status_code == 422 and "send it with stream=false" in both.json()["detail"]
        bad = http.post("/v1/reason", json={**QUESTION, "json_schema": {"type": "string", "pattern": "x"}})
        assert bad.status_code == 422 and "keyword 'pattern'" in bad.json()["detail"]


def test_agent_run_in_the_background_with_steps_as_sse(model_server: SpawnedServer) -> None:
    with httpx.Client(base_url=base_url(model_server), timeout=600) as http:
        started = http.post(
            "/v1/agent/runs", json={"task": "What is 12 * 7?", "tools": ["calculator"], "max_steps": 2}
        )
        assert started.status_code == 202, started.text
        run = started.json()
        assert (run["status"], run["task"], run["report"]) == ("running", "What is 12 * 7?", None)
        with http.stream("GET", f"/v1/agent/runs/{run['id']}/events") as s:
            got = list(events(s))
        final = http.get(f"/v1/agent/runs/{run['id']}").json()
    assert [k for k, _, _ in got] == ["step"] * len(final["steps"]) + ["done"]
    assert [d for k, _, d in got if k == "step"] == final["steps"]
    assert [i for k, i, _ in got if k == "step"] == [str(s["index"]) for s in final["steps"]]
    assert got[-1][2] == final
    assert final["status"] == "finished" and final["error"] is None
    report = final["report"]
    assert (report["brain"], report["tools"], report["max_steps"]) == (
        "local:gemma3-270m-gguf",
        ["calculator"],
        2,
    )
    assert report["stop_reason"] in ("answer", "step_budget", "repeated_action")
    assert 1 <= len(final["steps"]) <= 2 and report["steps"] == final["steps"]
    # Accept: text/event-stream on the run itself replays the same steps, resumable after a step.
    with httpx.Client(base_url=base_url(model_server), timeout=60) as http:
        headers = {"accept": "text/event-stream", "last-event-id": "1"}
        with http.stream("GET", f"/v1/agent/runs/{run['id']}", headers=headers) as s:
            replay = list(events(s))
    assert [d for k, _, d in replay if k == "step"] == final["steps"][1:]
    assert replay[-1][2] == final
