"""The reason service: a question answered by the local Gemma or the client's model, optionally
grounded in pasted context or passages retrieved from the knowledge base.

It owns the prompt, the retrieval for grounding and the result model; the MCP ``reason`` tool, the
CLI's ``ask`` and the REST API call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mcp_gemma.errors import InvalidInputError, McpGemmaError, ModelUnavailableError
from mcp_gemma.llm.sampling import Sampler, SamplingRequest

if TYPE_CHECKING:
    from mcp_gemma.llm.config import GemmaSettings
    from mcp_gemma.llm.service import LLMService, TextProgress

logger = logging.getLogger(__name__)

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


def build_prompt(question: str, context: str | None, passages: Sequence[tuple[int, str]]) -> str:
    """The text the model sees: context blocks first, then the question, then 'Answer:'."""
    parts = []
    if passages:
        parts.append("Knowledge base:\n" + "\n".join(f"[chunk:{cid}] {text}" for cid, text in passages))
    if context:
        parts.append(f"Context:\n{context}")
    parts.append(f"Question: {question}\nAnswer:")
    return "\n\n".join(parts)


async def retrieve_passages(rag: Any, question: str, top_k: int) -> list[tuple[int, str]]:
    """(chunk id, text) of the ``top_k`` best knowledge-base passages for ``question`` (hybrid search)."""
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


async def answer_locally(
    llm: LLMService,
    prompt: str,
    chunk_ids: list[int],
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    progress: TextProgress | None = None,
    load_progress: TextProgress | None = None,
) -> ReasonResult:
    """Answer ``prompt`` with the local model; ``progress`` receives the answer so far."""
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


async def answer_with_client(
    sampler: Sampler,
    limits: GemmaSettings,
    prompt: str,
    chunk_ids: list[int],
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    stop: Sequence[str] = (),
) -> ReasonResult:
    """Answer ``prompt`` with the client's model, held to the local model's limits.

    Raises :class:`~mcp_gemma.llm.sampling.SamplingRequired` when the client must answer in
    another round.
    """
    n = max_new_tokens or limits.default_max_new_tokens
    if not 1 <= n <= limits.max_new_tokens_limit:
        raise InvalidInputError(f"max_new_tokens={n} is outside 1..{limits.max_new_tokens_limit}")
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidInputError(
            f"the prompt is longer than gemma.max_prompt_chars={limits.max_prompt_chars:,}"
        )
    started = time.perf_counter()
    request = SamplingRequest(
        system=SYSTEM_PROMPT,
        messages=[("user", prompt)],
        max_tokens=n,
        temperature=temperature,
        stop=tuple(stop),
    )
    reply = await sampler.sample(request, key=SAMPLING_KEY)
    return ReasonResult(
        answer=reply.text.strip(),
        tokens_in=0,
        tokens_out=0,
        seconds=round(time.perf_counter() - started, 4),
        model_id=reply.model,
        finish_reason=reply.stop_reason or "stop",
        brain_used="client",
        context_chunk_ids=chunk_ids,
    )
