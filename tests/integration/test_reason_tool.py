"""The ``reason`` tool through a real MCP client (in-memory transport) with the real Gemma 270M."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.models import ModelStore
from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings
from tests.integration.conftest import SpawnedServer, server_env, stdio_params

pytestmark = pytest.mark.anyio

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def reason_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted model cache for every server these tests start."""
    root = tmp_path_factory.mktemp("reason-models")
    store = ModelStore(root)
    store.ensure_checkpoint(store.resolve(GemmaSettings().model))
    return root


def with_gemma(settings: Settings, models: Path | None = None, **gemma: Any) -> Settings:
    """The test settings with a shared model cache and gemma overrides."""
    if models is not None:
        gemma["cache_dir"] = models
    return load_settings(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url.get_secret_value() if settings.redis_url else None,
        namespace=settings.namespace,
        gemma=gemma,
    )


@asynccontextmanager
async def client_for(settings: Settings, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(create_server(settings), **kwargs) as client:
        yield client


class Sampler:
    """A client-side sampling callback that answers every request with one fixed reply."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.seen: list[types.CreateMessageRequestParams] = []

    async def __call__(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.seen.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=self.reply), model="client-llm"
        )


async def refused(client: Client, needle: str, **args: Any) -> str:
    with anyio.fail_after(60):
        result = await client.call_tool("reason", args)
    assert result.is_error, result
    text = str(result.content[0].text)  # type: ignore[union-attr]
    assert needle in text, text
    assert "Traceback" not in text
    return text


async def test_bad_input_is_refused_without_loading(settings: Settings) -> None:
    async with client_for(settings) as client:
        await refused(client, "at least 1 character", question="")
        await refused(client, "question is empty", question="   ")
        await refused(client, "max_prompt_chars", question="x" * 1_000_000)
        await refused(client, "max_new_tokens=0 is outside", question=QUESTION, max_new_tokens=0)
        await refused(client, "max_new_tokens=1000000000 is outside", question=QUESTION, max_new_tokens=10**9)
        await refused(client, "sampling capability", question=QUESTION, brain="client")
        health = await client.call_tool("health_check", {})
    llm = next(c for c in health.structured_content["components"] if c["kind"] == "llm")  # type: ignore[index]
    assert llm["loaded"] is False


async def test_unknown_model_is_a_clear_tool_error(settings: Settings) -> None:
    async with client_for(with_gemma(settings, model="nobody/no-such-model")) as client:
        await refused(client, "mcp-gemma model download nobody/no-such-model", question=QUESTION)


@pytest.mark.model
async def test_reason_answers_with_structured_content_and_progress(
    settings: Settings, reason_models_dir: Path
) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        updates.append((done, total, message))

    async with client_for(with_gemma(settings, reason_models_dir)) as client:
        with anyio.fail_after(240):
            result = await client.call_tool(
                "reason",
                {"question": QUESTION, "context": "Paris is the capital of France.", "max_new_tokens": 8},
                progress_callback=on_progress,
            )
            health = await client.call_tool("health_check", {})
    assert not result.is_error, result.content
    out = result.structured_content
    assert out is not None
    assert out["brain_used"] == "local"
    assert out["model_id"] == "gemma3-270m-gguf"
    assert out["context_chunk_ids"] == []
    assert out["answer"] == "Paris"
    assert out["prompt_style"] == "completion"
    assert 0 < out["tokens_out"] <= 8
    assert out["tokens_in"] > 10
    assert out["finish_reason"] == "stop"
    streamed = [m for _, _, m in updates if m and not m.startswith("loading model")]
    assert streamed, updates
    assert streamed[-1].strip() == out["answer"]
    assert [d for d, _, m in updates if m in streamed] == sorted(d for d, _, m in updates if m in streamed)
    llm = next(c for c in health.structured_content["components"] if c["kind"] == "llm")  # type: ignore[index]
    assert llm["loaded"] is True
    assert llm["detail"]["prompt_style"] == "completion"
    assert llm["detail"]["from_cache"] is True


@pytest.mark.model
async def test_cancelling_a_call_stops_generation_and_the_server_stays_healthy(
    settings: Settings, reason_models_dir: Path
) -> None:
    first = anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if message and not message.startswith("loading model"):
            first.set()

    async with client_for(with_gemma(settings, reason_models_dir)) as client:
        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:

                async def long_call() -> None:
                    await client.call_tool(
                        "reason",
                        {"question": "Tell me a long story.", "max_new_tokens": 500},
                        progress_callback=on_progress,
                    )

                tg.start_soon(long_call)
                await first.wait()
                tg.cancel_scope.cancel()
            started = anyio.current_time()
            again = await client.call_tool("reason", {"question": QUESTION, "max_new_tokens": 3})
            assert anyio.current_time() - started < 60
            health = await client.call_tool("health_check", {})
    assert not again.is_error, again.content
    assert again.structured_content["tokens_out"] <= 3  # type: ignore[index]
    llm = next(c for c in health.structured_content["components"] if c["kind"] == "llm")  # type: ignore[index]
    assert llm["detail"]["queued"] == 0


@pytest.mark.model
async def test_two_concurrent_reason_calls_both_complete(settings: Settings, reason_models_dir: Path) -> None:
    results: list[Any] = []
    async with client_for(with_gemma(settings, reason_models_dir)) as client:
        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for question in (QUESTION, "What is water made of?"):

                    async def ask(q: str = question) -> None:
                        results.append(await client.call_tool("reason", {"question": q, "max_new_tokens": 4}))

                    tg.start_soon(ask)
    assert len(results) == 2
    assert all(not r.is_error and r.structured_content["tokens_out"] <= 4 for r in results)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_client_brain_answers_through_sampling_with_the_knowledge_base(
    settings: Settings, mode: str
) -> None:
    sampler = Sampler("Paris.")
    async with client_for(settings, sampling_callback=sampler, mode=mode) as client:
        with anyio.fail_after(120):
            ingest = await client.call_tool(
                "ingest_document", {"text": "Paris is the capital and largest city of France."}
            )
            assert not ingest.is_error, ingest.content
            result = await client.call_tool(
                "reason",
                {"question": QUESTION, "use_knowledge_base": True, "brain": "client", "max_new_tokens": 16},
            )
    assert not result.is_error, result.content
    out = result.structured_content
    assert out is not None
    assert (out["answer"], out["brain_used"], out["model_id"]) == ("Paris.", "client", "client-llm")
    assert out["context_chunk_ids"]
    assert len(sampler.seen) == 1
    prompt = sampler.seen[0].messages[0].content.text  # type: ignore[union-attr]
    assert "Paris is the capital and largest city of France." in prompt
    assert f"[chunk:{out['context_chunk_ids'][0]}]" in prompt
    assert sampler.seen[0].max_tokens == 16


@pytest.mark.model
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_reason_over_a_spawned_server_streams_and_answers(
    transport: str, settings: Settings, reason_models_dir: Path, tmp_path: Path
) -> None:
    """The local model end to end through a real server process (int8 weights on the CPU)."""
    data = tmp_path / "data"
    cache = {"MCP_GEMMA_GEMMA__CACHE_DIR": str(reason_models_dir)}
    spawned: SpawnedServer | None = None
    if transport == "stdio":
        target: Any = stdio_params(data, **cache)
    else:
        spawned = SpawnedServer("http", data, env=server_env(data, **cache))
        target = spawned.url
    updates: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if message:
            updates.append(message)

    try:
        async with Client(target) as client:
            with anyio.fail_after(240):
                result = await client.call_tool(
                    "reason",
                    {"question": QUESTION, "context": "Paris is the capital of France.", "max_new_tokens": 6},
                    progress_callback=on_progress,
                )
                health = await client.call_tool("health_check", {})
    finally:
        if spawned is not None:
            spawned.stop()
    assert not result.is_error, result.content
    out = result.structured_content
    assert out is not None
    assert out["brain_used"] == "local"
    assert 0 < out["tokens_out"] <= 6
    streamed = [m for m in updates if not m.startswith("loading model")]
    assert streamed and streamed[-1].strip() == out["answer"]
    llm = next(c for c in health.structured_content["components"] if c["kind"] == "llm")  # type: ignore[index]
    assert llm["detail"]["dtype"] == "q8_0"


@pytest.mark.model
async def test_base_model_answers_in_one_line_and_stops(settings: Settings, reason_models_dir: Path) -> None:
    """The packaged checkpoint is the pretrained Gemma 3 270M: without a few-shot prompt and stops it
    answers, then writes "Question: ... Answer: ..." until the token budget. Greedy, so exact."""
    expected = {
        "What is the capital of France?": "Paris",
        "Who painted the Mona Lisa?": "Leonardo da Vinci",
        "What colour is the sky on a clear day?": "Blue",
    }
    async with client_for(with_gemma(settings, reason_models_dir)) as client:
        for question, answer in expected.items():
            with anyio.fail_after(240):
                result = await client.call_tool("reason", {"question": question, "max_new_tokens": 64})
            out = result.structured_content
            assert out is not None, result.content
            assert (out["answer"], out["finish_reason"], out["prompt_style"]) == (
                answer,
                "stop",
                "completion",
            )
        with anyio.fail_after(240):
            grounded = await client.call_tool(
                "reason",
                {
                    "question": "Where does photosynthesis take place?",
                    "context": "Photosynthesis takes place in the chloroplasts of plant cells.",
                },
            )
    assert grounded.structured_content is not None
    assert grounded.structured_content["answer"] == "In the chloroplasts of plant cells"
