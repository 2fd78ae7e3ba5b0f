"""How the brains shape requests: prefill for a local base model, sampling requests for the client."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import CreateMessageResult, TextContent

from mcp_gemma.agent.brain import BrainRequest, ClientBrain, LocalBrain, Turn
from mcp_gemma.llm.base import GenerationResult
from mcp_gemma.llm.sampling import SamplingRequired
from mcp_gemma.server.sampling import ClientSampler, sampled_text

pytestmark = pytest.mark.anyio

REQUEST = BrainRequest(
    system="SYSTEM",
    turns=[
        Turn("user", "Task: 2+2"),
        Turn("assistant", '{"tool": "calculator"}'),
        Turn("user", "Observation: 4"),
    ],
    max_tokens=16,
    stop=("\nObservation:",),
    prefix='{"thought": "',
)


class RecordingLLM:
    """Stands in for LLMService in this test only: records the prompt, answers with fixed text."""

    def __init__(self, style: str) -> None:
        self.settings = type("S", (), {"model": "test-model"})()
        self.info = type("I", (), {"prompt_style": style})()
        self.calls: list[dict[str, Any]] = []

    async def ensure_loaded(self) -> Any:
        return self

    async def generate(self, prompt: Any, **kwargs: Any) -> GenerationResult:
        self.calls.append({"prompt": prompt, **kwargs})
        return GenerationResult(
            text='done", "answer": "4"}',
            tokens_in=1,
            tokens_out=1,
            finish_reason="stop",
            seconds=0,
            model_id="t",
        )


async def test_local_base_model_gets_a_transcript_and_a_prefilled_reply() -> None:
    llm = RecordingLLM("completion")
    reply = await LocalBrain(llm).complete(REQUEST, key="step-2")  # type: ignore[arg-type]
    assert reply == '{"thought": "done", "answer": "4"}'
    call = llm.calls[0]
    assert call["prompt"].startswith("SYSTEM\n\nUser: Task: 2+2\nAssistant: {")
    assert call["prompt"].endswith('User: Observation: 4\nAssistant: {"thought": "')
    assert call["stop"][0] == "\n" and call["max_new_tokens"] == 16


async def test_local_chat_model_gets_messages() -> None:
    llm = RecordingLLM("chat")
    await LocalBrain(llm).complete(REQUEST, key="step-2")  # type: ignore[arg-type]
    roles = [m.role for m in llm.calls[0]["prompt"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_client_brain_without_back_channel_asks_for_input() -> None:
    known = CreateMessageResult(role="assistant", content=TextContent(type="text", text="known"), model="m")
    brain = ClientBrain(ClientSampler(None, back_channel=False, responses={"step-1": known}))
    assert await brain.complete(REQUEST, key="step-1") == "known"
    with pytest.raises(SamplingRequired) as info:
        await brain.complete(REQUEST, key="step-2")
    params = info.value.request.params
    assert info.value.key == "step-2" and params.system_prompt == "SYSTEM" and params.max_tokens == 16
    assert [m.role for m in params.messages] == ["user", "assistant", "user"]


def test_sampled_text_reads_results() -> None:
    result = CreateMessageResult(role="assistant", content=TextContent(type="text", text="hi"), model="m")
    assert sampled_text(result) == "hi"
    assert sampled_text(result.model_dump(by_alias=True)) == "hi"
