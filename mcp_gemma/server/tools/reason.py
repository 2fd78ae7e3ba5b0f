"""The ``reason`` tool: Gemma (or the client's model, through sampling) answers a question."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ErrorData,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field

from mcp_gemma.agent.brain import client_supports_sampling, sampled_text
from mcp_gemma.errors import InvalidInputError, McpGemmaError, ModelUnavailableError
from mcp_gemma.state import AppState

logger = logging.getLogger(__name__)

Brain = Literal["local", "client", "auto"]
SAMPLING_KEY = "reason_answer"
SYSTEM_PROMPT = (
    "Answer the question accurately and briefly. Use the context when it is given; cite [chunk:ID]."
)


class ReasonResult(BaseModel):
    """An answer and what it cost."""

    answer: str = Field(description="The generated answer.")
    tokens_in: int = Field(description="Prompt tokens (0 when the client's model answered and did not say).")
    tokens_out: int = Field(description="Generated tokens (0 when the client's model answered).")
    seconds: float = Field(description="Wall-clock time of the generation.")
    model_id: str = Field(description="Which model answered.")
    finish_reason: str = Field(
        description="stop, length, cancelled or timeout (or the client's stop reason)."
    )
    brain_used: Literal["local", "client"] = Field(
        description="Who answered: the local model or the client's."
    )
    context_chunk_ids: list[int] = Field(description="Knowledge-base chunks the model was given.")


def build_prompt(question: str, context: str | None, passages: list[tuple[int, str]]) -> str:
    """The text the model sees: context blocks first, then the question, then 'Answer:'."""
    parts = []
    if passages:
        parts.append("Knowledge base:\n" + "\n".join(f"[chunk:{cid}] {text}" for cid, text in passages))
    if context:
        parts.append(f"Context:\n{context}")
    parts.append(f"Question: {question}\nAnswer:")
    return "\n\n".join(parts)


def register(server: MCPServer[AppState]) -> None:
    """Add the ``reason`` tool."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def reason(
        ctx: Context[AppState],
        question: Annotated[str, Field(min_length=1, description="What to answer.")],
        context: Annotated[
            str | None, Field(description="Text to ground the answer in (pasted notes, a document).")
        ] = None,
        use_knowledge_base: Annotated[
            bool, Field(description="Retrieve passages from the knowledge base (hybrid search) first.")
        ] = False,
        top_k: Annotated[
            int, Field(ge=1, le=20, description="Passages to retrieve with use_knowledge_base.")
        ] = 4,
        max_new_tokens: Annotated[
            int | None,
            Field(
                description="Token budget of the answer (1..gemma.max_new_tokens_limit; default: settings)."
            ),
        ] = None,
        temperature: Annotated[float, Field(ge=0.0, le=2.0, description="0 = greedy (deterministic).")] = 0.0,
        top_p: Annotated[float, Field(gt=0.0, le=1.0, description="Nucleus sampling mass.")] = 1.0,
        seed: Annotated[int | None, Field(ge=0, description="Seed for sampling (temperature > 0).")] = None,
        stop: Annotated[
            list[str], Field(max_length=16, description="Strings that end the answer (not included).")
        ] = [],  # noqa: B006 - pydantic copies defaults
        brain: Annotated[
            Brain | None,
            Field(
                description="local model, the client's model (MCP sampling), or auto; default gemma.brain."
            ),
        ] = None,
    ) -> ReasonResult | InputRequiredResult:
        """Answer a question with the local Gemma model, optionally grounded in context or the knowledge base.

        Streams the answer as progress notifications; cancelling the request stops generation.
        """
        state = ctx.request_context.lifespan_context
        llm: Any = getattr(state, "llm", None)
        chosen = brain or state.settings.gemma.brain
        use_client = _wants_client(ctx, chosen)
        if llm is None and not use_client:
            raise ModelUnavailableError("no local model is configured in this server")
        if not question.strip():
            raise InvalidInputError("the question is empty; ask something")
        passages = await _retrieve(state, question, top_k) if use_knowledge_base else []
        prompt = build_prompt(question, context, passages)
        chunk_ids = [cid for cid, _ in passages]
        if use_client:
            return await _ask_client(ctx, state, prompt, max_new_tokens, temperature, stop, chunk_ids)

        total = float(max_new_tokens or state.settings.gemma.default_max_new_tokens)
        pieces = 0

        async def progress(text: str) -> None:
            nonlocal pieces
            pieces += 1
            await ctx.report_progress(min(float(pieces), total), total, message=text)

        async def load_progress(message: str) -> None:
            await ctx.report_progress(0.0, total, message=f"loading model: {message}")

        result = await llm.generate(
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            progress=progress,
            load_progress=load_progress,
        )
        return ReasonResult(
            answer=result.text.strip(),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            seconds=result.seconds,
            model_id=result.model_id,
            finish_reason=result.finish_reason,
            brain_used="local",
            context_chunk_ids=chunk_ids,
        )


def _wants_client(ctx: Context[AppState], brain: Brain) -> bool:
    if brain == "local":
        return False
    samples = client_supports_sampling(ctx.request_context.session)
    if brain == "client" and not samples:
        raise InvalidInputError(
            "brain='client' needs a client that declares the sampling capability; use 'local' or 'auto'"
        )
    return samples


async def _retrieve(state: AppState, question: str, top_k: int) -> list[tuple[int, str]]:
    rag: Any = getattr(state, "rag", None)
    if rag is None:
        raise ModelUnavailableError(
            "the knowledge base is not available in this server; pass context instead"
        )
    try:
        found = await rag.hybrid_search(question, limit=top_k)
    except McpGemmaError:
        raise
    except Exception as exc:
        logger.exception("knowledge-base retrieval failed")
        raise ModelUnavailableError(f"knowledge-base retrieval failed: {exc}") from exc
    return [(int(hit.chunk_id), str(hit.text)) for hit in found.hits]


async def _ask_client(
    ctx: Context[AppState],
    state: AppState,
    prompt: str,
    max_new_tokens: int | None,
    temperature: float,
    stop: list[str],
    chunk_ids: list[int],
) -> ReasonResult | InputRequiredResult:
    """Delegate to the client's model: mid-call on handshake-era sessions, else an input-required round."""
    limits = state.settings.gemma
    n = max_new_tokens or limits.default_max_new_tokens
    if not 1 <= n <= limits.max_new_tokens_limit:
        raise InvalidInputError(f"max_new_tokens={n} is outside 1..{limits.max_new_tokens_limit}")
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidInputError(
            f"the prompt is longer than gemma.max_prompt_chars={limits.max_prompt_chars:,}"
        )
    started = time.perf_counter()
    session = ctx.request_context.session
    responses = ctx.input_responses or {}
    if SAMPLING_KEY in responses:
        reply: Any = responses[SAMPLING_KEY]
        if isinstance(reply, ErrorData):
            raise ModelUnavailableError(f"the client declined the sampling request: {reply.message}")
    else:
        request = CreateMessageRequest(
            params=CreateMessageRequestParams(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                system_prompt=SYSTEM_PROMPT,
                max_tokens=n,
                temperature=temperature,
                stop_sequences=stop or None,
            )
        )
        if not session.can_send_request:
            return InputRequiredResult(input_requests={SAMPLING_KEY: request})
        try:
            reply = await session.send_request(request, CreateMessageResult)
        except McpGemmaError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"the client's model did not answer the sampling request: {exc}"
            ) from exc
    if isinstance(reply, dict):
        reply = CreateMessageResult.model_validate(reply)
    return ReasonResult(
        answer=sampled_text(reply).strip(),
        tokens_in=0,
        tokens_out=0,
        seconds=round(time.perf_counter() - started, 4),
        model_id=str(getattr(reply, "model", "client")),
        finish_reason=str(getattr(reply, "stop_reason", None) or "stop"),
        brain_used="client",
        context_chunk_ids=chunk_ids,
    )
