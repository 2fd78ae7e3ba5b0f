"""``/v1/reason``: the local Gemma answers a question, as one JSON result or token by token as SSE."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from mcp_gemma.api.access import Caller
from mcp_gemma.api.deps import State
from mcp_gemma.api.documents import CollectionField
from mcp_gemma.api.problems import domain_problem_body, problem_responses
from mcp_gemma.api.sse import EVENT_STREAM, sse_event, sse_response
from mcp_gemma.errors import InvalidInputError, McpGemmaError
from mcp_gemma.llm.reason import (
    ReasonResult,
    answer_question,
    answer_structured,
    completion_prompt,
    grounding,
)
from mcp_gemma.security.rights import check_tool
from mcp_gemma.state import AppState

if TYPE_CHECKING:
    from mcp_gemma.llm.service import TextProgress

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["reason"], responses=problem_responses(413))

STREAM_HELP = (
    "With stream=true: events 'token' ({\"text\": the next piece}) as the model writes, then 'result' "
    "(the ReasonResult) or 'error' (a problem document)."
)


class ReasonRequest(BaseModel):
    """A question for the local model, and how to answer it."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="What to answer.")
    context: str | None = Field(None, description="Text to ground the answer in (notes, a document).")
    use_knowledge_base: bool = Field(False, description="Retrieve passages from the knowledge base first.")
    top_k: int = Field(4, ge=1, le=20, description="Passages to retrieve with use_knowledge_base.")
    collection: str = CollectionField
    max_new_tokens: int | None = Field(
        None, description="Token budget of the answer (1..gemma.max_new_tokens_limit; default: settings)."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy (deterministic).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(None, ge=0, description="Seed for sampling (temperature > 0).")
    stop: list[str] = Field(default_factory=list, max_length=16, description="Strings that end the answer.")
    stream: bool = Field(False, description="Answer as Server-Sent Events, token by token.")
    json_schema: dict[str, Any] | None = Field(
        None,
        description="Answer as one JSON object valid for this JSON schema, decoded under the schema's "
        "grammar (object, string, integer, number, boolean, null, array, enum, const; minLength/maxLength, "
        "minItems/maxItems). The parsed value is in 'structured'. Not with stream=true.",
    )


@router.post("/reason", response_model=ReasonResult, responses=sse_response(STREAM_HELP, ReasonResult))
async def reason(body: ReasonRequest, state: State, caller: Caller) -> Response | ReasonResult:
    """Answer a question with the local Gemma model (the reason tool with brain 'local'), optionally
    grounded in context or the knowledge base. Closing the connection stops the generation."""
    if body.json_schema is not None and body.stream:
        raise InvalidInputError("json_schema answers come whole: send it with stream=false")
    check_tool(
        caller, "reason", {"use_knowledge_base": body.use_knowledge_base, "collection": body.collection}
    )
    passages = await grounding(
        state.collection(body.collection) if body.use_knowledge_base else None,
        body.question,
        use_knowledge_base=body.use_knowledge_base,
        top_k=body.top_k,
    )
    if body.json_schema is not None:
        return await answer_structured(
            state.llm,
            body.question,
            body.context,
            passages,
            body.json_schema,
            max_new_tokens=body.max_new_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
        )
    if not body.stream:
        return await _answer(state, body, passages)
    # Bad input is refused with a status before the stream starts (and before a model loads).
    state.llm.validate(
        completion_prompt(body.question, body.context, passages),
        body.max_new_tokens,
        body.temperature,
        body.top_p,
        body.stop,
    )
    return StreamingResponse(
        _stream(state, body, passages), media_type=EVENT_STREAM, headers={"cache-control": "no-store"}
    )


async def _answer(
    state: AppState,
    body: ReasonRequest,
    passages: list[tuple[int, str]],
    progress: TextProgress | None = None,
) -> ReasonResult:
    return await answer_question(
        state.llm,
        body.question,
        body.context,
        passages,
        max_new_tokens=body.max_new_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
        progress=progress,
    )


async def _stream(
    state: AppState, body: ReasonRequest, passages: list[tuple[int, str]]
) -> AsyncIterator[bytes]:
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=64)
    written = 0

    async def progress(text_so_far: str) -> None:
        nonlocal written
        piece, written = text_so_far[written:], len(text_so_far)
        if piece:
            await send.send(sse_event("token", {"text": piece}))

    async def work() -> None:
        async with send:
            try:
                result = await _answer(state, body, passages, progress)
            except McpGemmaError as exc:
                await send.send(sse_event("error", domain_problem_body(exc)))
            except Exception as exc:  # the status line is sent: the stream itself must say it failed
                logger.exception("streamed reason failed")
                await send.send(sse_event("error", domain_problem_body(McpGemmaError(_internal(exc)))))
            else:
                await send.send(sse_event("result", result))

    async with anyio.create_task_group() as tg:
        tg.start_soon(work)
        async with receive:
            async for chunk in receive:
                yield chunk


def _internal(exc: Exception) -> str:
    return f"the answer failed ({type(exc).__name__}); the server log has details"
