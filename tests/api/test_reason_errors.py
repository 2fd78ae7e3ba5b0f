"""``/v1/reason`` when the model cannot load: a 503 problem, or an ``error`` event mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import SpawnedServer

from .conftest import base_url, spawn
from .test_documents_search import problem

HINT = "mcp-gemma model download nobody/no-such-model"


@pytest.fixture(scope="module")
def no_model(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SpawnedServer]:
    server = spawn(
        Path(tmp_path_factory.mktemp("no-model")) / "data",
        redis_url,
        MCP_GEMMA_GEMMA__MODEL="nobody/no-such-model",
    )
    yield server
    server.stop()


def test_a_model_that_cannot_load_is_a_problem_or_an_error_event(no_model: SpawnedServer) -> None:
    question = {"question": "What is the capital of France?"}
    with httpx.Client(base_url=base_url(no_model), timeout=120) as http:
        assert HINT in problem(http.post("/v1/reason", json=question), 503)["detail"]
        with http.stream("POST", "/v1/reason", json={**question, "stream": True}) as s:
            assert s.status_code == 200
            lines = [line for line in s.iter_lines() if line]
        assert lines[0] == "event: error" and len(lines) == 2
        event = json.loads(lines[1].removeprefix("data: "))
        assert (event["status"], event["type"]) == (503, "urn:mcp-gemma:problem:model-unavailable")
        assert HINT in event["detail"]
        empty = problem(http.post("/v1/reason", json={"question": "   "}), 422)
        assert empty["detail"] == "the question is empty; ask something"
        grounded = http.post("/v1/reason", json={**question, "use_knowledge_base": True, "top_k": 0})
        assert "body.top_k" in problem(grounded, 422)["detail"]
