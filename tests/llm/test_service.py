"""LLMService: validation, lazy single load, queueing, streaming to async callbacks, cancellation."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.base import GenerationResult
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.service import LLMService

pytestmark = pytest.mark.anyio

PROMPT = "The capital of France is"


@pytest.fixture
def service(gemma: GemmaModel, models_dir: Path, tmp_path: Path) -> LLMService:
    """A service around the session's loaded model (no second load)."""
    return LLMService(GemmaSettings(cache_dir=models_dir), tmp_path, model=gemma)


async def test_nothing_loads_until_first_use(tmp_path: Path) -> None:
    service = LLMService(GemmaSettings(), tmp_path)
    status = service.status()
    assert status.loaded is False
    assert status.info is None
    assert service.component_status().kind == "llm"
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    ("prompt", "max_new_tokens", "message"),
    [
        ("", 4, "empty"),
        ("   ", 4, "empty"),
        ("x" * 1_000_000, 4, "max_prompt_chars"),
        (PROMPT, 0, "max_new_tokens=0 is outside"),
        (PROMPT, 1_000_000_000, "max_new_tokens=1000000000 is outside"),
    ],
)
async def test_bad_input_is_refused_before_loading(
    tmp_path: Path, prompt: str, max_new_tokens: int, message: str
) -> None:
    service = LLMService(GemmaSettings(), tmp_path)
    with pytest.raises(InvalidInputError, match=message):
        await service.generate(prompt, max_new_tokens=max_new_tokens)
    assert service.loaded is False


async def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    service = LLMService(GemmaSettings(model="nobody/nothing-here"), tmp_path)
    with pytest.raises(ModelUnavailableError, match="not downloaded"):
        await service.generate(PROMPT, max_new_tokens=2)
    assert service.status().last_error is not None
    assert "not downloaded" in service.component_status().detail["last_error"]  # type: ignore[operator]


@pytest.mark.model
@pytest.mark.usefixtures("gemma")  # the session's cold load has built the cache
async def test_concurrent_first_calls_share_one_load(models_dir: Path, tmp_path: Path) -> None:
    service = LLMService(GemmaSettings(cache_dir=models_dir, concurrency=2), tmp_path)
    results = []

    async def ask() -> None:
        results.append(await service.generate(PROMPT, max_new_tokens=2))

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            tg.start_soon(ask)
    assert results[0].text == results[1].text
    info = service.status().info
    assert info is not None and info.from_cache is True
    assert await service.unload() is True
    assert service.loaded is False
    assert await service.unload() is False


@pytest.mark.model
async def test_streams_progress_in_order(service: LLMService) -> None:
    updates: list[str] = []

    async def progress(text: str) -> None:
        updates.append(text)

    with anyio.fail_after(120):
        result = await service.generate(PROMPT, max_new_tokens=8, progress=progress)
    assert updates
    assert updates[-1] == result.text
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(updates))


@pytest.mark.model
async def test_two_concurrent_generations_both_complete(service: LLMService) -> None:
    results = {}

    async def ask(key: str, prompt: str) -> None:
        results[key] = await service.generate(prompt, max_new_tokens=4)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "a", PROMPT)
            tg.start_soon(ask, "b", "Water is made of")
    assert results["a"].finish_reason == results["b"].finish_reason == "length"
    assert service.status().generations == 2


@pytest.mark.model
async def test_cancelling_the_caller_stops_the_worker(
    service: LLMService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_piece = anyio.Event()
    model = await service.ensure_loaded()
    results: list[GenerationResult] = []
    generate = model.generate

    def recording_generate(*args: Any, **kwargs: Any) -> GenerationResult:
        result = generate(*args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(model, "generate", recording_generate)

    async def progress(_text: str) -> None:
        first_piece.set()

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                await service.generate(PROMPT, max_new_tokens=400, progress=progress)

            tg.start_soon(long_call)
            await first_piece.wait()
            tg.cancel_scope.cancel()
        # The next call waits for the slot, which the cancelled worker keeps until it has stopped.
        after = await service.generate(PROMPT, max_new_tokens=2)
    assert after.finish_reason == "length"
    cancelled = results[0]
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.tokens_out < 400
    assert service.status().queued == 0


@pytest.mark.model
@pytest.mark.usefixtures("gemma")  # the session's cold load has built the cache
async def test_preload_loads_in_the_background_and_callers_wait_for_it(
    models_dir: Path, tmp_path: Path
) -> None:
    service = LLMService(GemmaSettings(cache_dir=models_dir, preload=True), tmp_path)
    service.start_preload()
    service.start_preload()  # idempotent
    assert service.status().loading or service.loaded
    with anyio.fail_after(240):
        result = await service.generate(PROMPT, max_new_tokens=2)
    assert result.tokens_out == 2
    assert service.status().loading is False
    await service.unload()
