"""The reason service: a question answered by the local Gemma or the client's model, optionally
grounded in pasted context or passages retrieved from the knowledge base.

It owns the prompt, the retrieval for grounding and the result model; the MCP ``reason`` tool, the
CLI's ``ask`` and the REST API call it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mcp_gemma.errors import InvalidInputError, McpGemmaError, ModelUnavailableError
from mcp_gemma.llm.base import ChatMessage
from mcp_gemma.llm.grammar import check_schema
from mcp_gemma.llm.sampling import Sampler, SamplingRequest

if TYPE_CHECKING:
    from mcp_gemma.llm.config import GemmaSettings
    from mcp_gemma.llm.service import LLMService, TextProgress

logger = logging.getLogger(__name__)

SAMPLING_KEY = "reason_answer"
SYSTEM_PROMPT = (
    "Answer the question accurately and briefly. Use the context when it is given; cite [chunk:ID]."
)
# A base (pretrained) checkpoint continues text: it is shown worked examples, one answer per line,
# and stopped where the next example would begin (else it writes "Question: ..." until its budget).
FEW_SHOT = (
    "Answer each question briefly and accurately, in one line.\n\n"
    "Question: What is the largest planet in the solar system?\nAnswer: Jupiter\n\n"
    "Question: Who wrote the play Romeo and Juliet?\nAnswer: William Shakespeare\n\n"
    "Context: The Amazon river flows east across South America and empties into the Atlantic Ocean.\n"
    "Question: Into which ocean does the Amazon river flow?\nAnswer: The Atlantic Ocean\n\n"
)
COMPLETION_STOPS = ("\nQuestion:", "\n\n", "\nContext:", "\nAnswer:")


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
    structured: Any = Field(
        None,
        description="With json_schema: the answer parsed as JSON, valid for that schema (decoded under "
        "its grammar, so the model could not write anything else).",
    )
    prompt_style: Literal["chat", "completion", "client"] = Field(
        "client",
        description="How the question was put: the checkpoint's chat template (instruction-tuned), a "
        "few-shot completion prompt with stops (base checkpoint), or the client's own model.",
    )


def build_prompt(question: str, context: str | None, passages: Sequence[tuple[int, str]]) -> str:
    """The text the model sees: context blocks first, then the question, then 'Answer:'."""
    parts = []
    if passages:
        parts.append("Knowledge base:\n" + "\n".join(f"[chunk:{cid}] {text}" for cid, text in passages))
    if context:
        parts.append(f"Context:\n{context}")
    parts.append(f"Question: {question}\nAnswer:")
    return "\n\n".join(parts)


def completion_prompt(question: str, context: str | None, passages: Sequence[tuple[int, str]]) -> str:
    """The few-shot prompt a base checkpoint answers in one line (stopped by :data:`COMPLETION_STOPS`)."""
    lines = [f"[chunk:{cid}] {' '.join(text.split())}" for cid, text in passages]
    if context:
        lines.append(" ".join(context.split()))
    block = f"Context: {' '.join(lines)}\n" if lines else ""
    return f"{FEW_SHOT}{block}Question: {' '.join(question.split())}\nAnswer:"


def chat_messages(
    question: str, context: str | None, passages: Sequence[tuple[int, str]]
) -> list[ChatMessage]:
    """The conversation an instruction-tuned checkpoint's chat template renders."""
    return [
        ChatMessage(role="system", content=SYSTEM_PROMPT),
        ChatMessage(role="user", content=build_prompt(question, context, passages).removesuffix("\nAnswer:")),
    ]


def clean_answer(text: str) -> str:
    """The answer without surrounding space, an echoed "Answer:" label, or lines that repeat an
    earlier one (a base model that loops says the same line again)."""
    kept: list[str] = []
    for line in text.strip().removeprefix("Answer:").strip().splitlines():
        if line.strip() and line.strip() in (k.strip() for k in kept):
            break
        kept.append(line)
    return "\n".join(kept).strip()


async def answer_question(
    llm: LLMService,
    question: str,
    context: str | None,
    passages: Sequence[tuple[int, str]],
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    progress: TextProgress | None = None,
    load_progress: TextProgress | None = None,
) -> ReasonResult:
    """Answer with the local model in the prompt style its checkpoint calls for: the chat template of
    an instruction-tuned checkpoint, or a few-shot completion prompt with stops for a base one."""
    # Refuse bad input before a model loads (the completion prompt is the longer of the two).
    llm.validate(completion_prompt(question, context, passages), max_new_tokens, temperature, top_p, stop)
    model = await llm.ensure_loaded(load_progress)
    style = model.info.prompt_style
    prompt: str | list[ChatMessage]
    if style == "chat":
        prompt, stops = chat_messages(question, context, passages), tuple(stop)
    else:
        prompt, stops = completion_prompt(question, context, passages), (*stop, *COMPLETION_STOPS)
    result = await answer_locally(
        llm,
        prompt,
        [cid for cid, _ in passages],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stops[:16],
        seed=seed,
        progress=progress,
        load_progress=load_progress,
    )
    return result.model_copy(update={"answer": clean_answer(result.answer), "prompt_style": style})


async def grounding(
    rag: Any, question: str, *, use_knowledge_base: bool, top_k: int
) -> list[tuple[int, str]]:
    """Refuse an empty question; the knowledge-base passages to ground it in (none unless asked)."""
    if not question.strip():
        raise InvalidInputError("the question is empty; ask something")
    return await retrieve_passages(rag, question, top_k) if use_knowledge_base else []


JSON_FEW_SHOT = (
    "Answer each question with one JSON object that follows its schema.\n\n"
    'Schema: {"type": "object", "properties": {"planet": {"type": "string"}, "moons": {"type": "integer"}}}\n'
    "Question: Which is the largest planet in the solar system, and how many moons does it have?\n"
    'JSON: {"planet": "Jupiter", "moons": 95}\n\n'
)


def json_prompt(
    question: str, context: str | None, passages: Sequence[tuple[int, str]], schema: dict[str, Any]
) -> str:
    """The few-shot prompt for an answer in JSON (completion style; the grammar does the rest)."""
    lines = [f"[chunk:{cid}] {' '.join(text.split())}" for cid, text in passages]
    if context:
        lines.append(" ".join(context.split()))
    block = f"Context: {' '.join(lines)}\n" if lines else ""
    return (
        f"{JSON_FEW_SHOT}Schema: {json.dumps(schema, separators=(', ', ': '))}\n{block}"
        f"Question: {' '.join(question.split())}\nJSON:"
    )


async def answer_structured(
    llm: LLMService,
    question: str,
    context: str | None,
    passages: Sequence[tuple[int, str]],
    schema: dict[str, Any],
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> ReasonResult:
    """A JSON answer valid for ``schema``, by the local model decoding under the schema's grammar.

    Chat checkpoints get the schema in their chat template, base ones a few-shot completion prompt;
    either way the grammar forces the structure and the model fills in the values.
    """
    check_schema(schema)
    prompt: str | list[ChatMessage] = json_prompt(question, context, passages, schema)
    llm.validate(prompt, max_new_tokens, temperature, top_p)
    model = await llm.ensure_loaded()
    style = model.info.prompt_style
    if style == "chat":
        prompt = [
            ChatMessage(
                role="system",
                content=f"{SYSTEM_PROMPT} Reply with one JSON object valid for this schema: "
                f"{json.dumps(schema)}",
            ),
            ChatMessage(
                role="user", content=build_prompt(question, context, passages).removesuffix("\nAnswer:")
            ),
        ]
    result, value = await llm.generate_json(
        prompt, schema, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
    )
    return ReasonResult(
        answer=result.text,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        seconds=result.seconds,
        model_id=result.model_id,
        finish_reason=result.finish_reason,
        brain_used="local",
        context_chunk_ids=[cid for cid, _ in passages],
        structured=value,
        prompt_style=style,
    )


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
    prompt: str | Sequence[ChatMessage],
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
    """Answer ``prompt`` as given with the local model; ``progress`` receives the answer so far."""
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
