"""The ``reason`` tool: Gemma (or the client's model, through sampling) answers a question.

The work is the reason service's (:mod:`mcp_gemma.llm.reason`); this module adds the MCP surface:
the parameters, progress notifications and the sampling round with the client.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import Field

from mcp_gemma.errors import InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.reason import (
    ReasonResult,
    answer_question,
    answer_structured,
    answer_with_client,
    build_prompt,
    grounding,
)
from mcp_gemma.llm.sampling import SamplingRequired
from mcp_gemma.rag.names import COLLECTION_HELP, COLLECTION_PATTERN, DEFAULT_COLLECTION
from mcp_gemma.server.sampling import ClientSampler, client_supports_sampling
from mcp_gemma.state import AppState

Brain = Literal["local", "client", "auto"]


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
        collection: Annotated[
            str,
            Field(
                pattern=COLLECTION_PATTERN,
                description="Knowledge base use_knowledge_base searches. " + COLLECTION_HELP,
            ),
        ] = DEFAULT_COLLECTION,
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
        json_schema: Annotated[
            dict[str, Any] | None,
            Field(
                description="Answer as one JSON object valid for this JSON schema, decoded by the local "
                "model under the schema's grammar (object, string, integer, number, boolean, null, array, "
                "enum, const; minLength/maxLength, minItems/maxItems). The parsed value is in 'structured'."
            ),
        ] = None,
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
        if json_schema is not None:
            if chosen == "client":
                raise InvalidInputError(
                    "json_schema is decoded by the local model under the schema's grammar; use brain='local' "
                    "or 'auto' (the client's model cannot be constrained)"
                )
            chosen = "local"
        use_client = _wants_client(ctx, chosen)
        if llm is None and not use_client:
            raise ModelUnavailableError("no local model is configured in this server")
        passages = await grounding(
            state.collection(collection) if use_knowledge_base else None,
            question,
            use_knowledge_base=use_knowledge_base,
            top_k=top_k,
        )
        prompt = build_prompt(question, context, passages)
        chunk_ids = [cid for cid, _ in passages]
        if use_client:
            session = ctx.request_context.session
            sampler = ClientSampler(
                session, back_channel=session.can_send_request, responses=ctx.input_responses
            )
            try:
                return await answer_with_client(
                    sampler,
                    state.settings.gemma,
                    prompt,
                    chunk_ids,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    stop=stop,
                )
            except SamplingRequired as need:
                return InputRequiredResult(input_requests={need.key: need.request})

        if json_schema is not None:
            return await answer_structured(
                llm,
                question,
                context,
                passages,
                json_schema,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
            )
        total = float(max_new_tokens or state.settings.gemma.default_max_new_tokens)
        pieces = 0

        async def progress(text: str) -> None:
            nonlocal pieces
            pieces += 1
            await ctx.report_progress(min(float(pieces), total), total, message=text)

        async def load_progress(message: str) -> None:
            await ctx.report_progress(0.0, total, message=f"loading model: {message}")

        return await answer_question(
            llm,
            question,
            context,
            passages,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            progress=progress,
            load_progress=load_progress,
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
