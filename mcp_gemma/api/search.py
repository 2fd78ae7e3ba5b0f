"""``/v1/search`` (vector, semantic or hybrid) and ``/v1/research`` over the knowledge base."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mcp_gemma.api.access import Caller
from mcp_gemma.api.deps import State
from mcp_gemma.api.documents import CollectionField
from mcp_gemma.api.problems import problem_responses
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag.models import ResearchReport, SearchResult, SemanticSearchResult
from mcp_gemma.rag.research import research
from mcp_gemma.security.rights import check_tool

router = APIRouter(prefix="/v1", tags=["search"], responses=problem_responses(413, 422, 503))

FILTER_HELP = (
    'Metadata filter, all fields must match: {"lang": "en"} (equality; a list field matches when it '
    'contains the value), {"tag": {"$in": ["a", "b"]}}, {"year": {"$gte": 2020, "$lt": 2024}}; "doc_id" '
    "filters by document id. A field no document has is an error."
)
_ONLY = {
    "min_score": ("vector", "semantic"),
    "diversity": ("semantic",),
    "context_chunks": ("semantic",),
    "keyword_weight": ("hybrid",),
    "fusion": ("hybrid",),
}


class SearchRequest(BaseModel):
    """A search: the query, the mode and that mode's options."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000, description="What to look for, in plain words.")
    mode: Literal["vector", "semantic", "hybrid"] = Field(
        "hybrid",
        description="vector: chunks by cosine similarity (the search_documents tool); semantic: diverse "
        "passages with context (semantic_search); hybrid: BM25 and vectors fused (hybrid_search).",
    )
    limit: int = Field(5, ge=1, le=10_000, description="How many results (at most rag.max_results).")
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    group_by_document: bool = Field(False, description="Return the best chunk of each document, not chunks.")
    min_score: float | None = Field(
        None, ge=-1.0, le=1.0, description="vector, semantic: drop matches below this cosine similarity."
    )
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="semantic: 0 = pure relevance, 1 = maximal novelty (default 0.1)."
    )
    context_chunks: int | None = Field(
        None, ge=0, le=5, description="semantic: neighbouring chunks on each side of a match (default 1)."
    )
    keyword_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="hybrid: fix the BM25 share (implies fusion 'weighted')."
    )
    fusion: Literal["adaptive", "coverage", "weighted", "rrf"] | None = Field(
        None, description="hybrid: adaptive, coverage, weighted or rrf (default rag.fusion)."
    )
    collection: str = CollectionField


@router.post("/search")
async def search(body: SearchRequest, state: State, caller: Caller) -> SearchResult | SemanticSearchResult:
    """Search the knowledge base: the same services as the search_documents, semantic_search and
    hybrid_search tools, chosen by ``mode``."""
    misplaced = [f for f, modes in _ONLY.items() if getattr(body, f) is not None and body.mode not in modes]
    if misplaced:
        raise InvalidInputError(
            f"{', '.join(misplaced)} do not apply to mode {body.mode!r}; "
            + "; ".join(f"{f} is for mode {' or '.join(_ONLY[f])}" for f in misplaced)
        )
    tool = {"vector": "search_documents", "semantic": "semantic_search", "hybrid": "hybrid_search"}[body.mode]
    check_tool(caller, tool, {"collection": body.collection})
    rag = state.collection(body.collection)
    if body.mode == "vector":
        return await rag.search(
            body.query,
            limit=body.limit,
            min_score=body.min_score,
            filter=body.filter,
            group_by_document=body.group_by_document,
        )
    if body.mode == "semantic":
        return await rag.semantic_search(
            body.query,
            limit=body.limit,
            filter=body.filter,
            diversity=0.1 if body.diversity is None else body.diversity,
            context_chunks=1 if body.context_chunks is None else body.context_chunks,
            min_score=body.min_score,
            group_by_document=body.group_by_document,
        )
    return await rag.hybrid_search(
        body.query,
        limit=body.limit,
        filter=body.filter,
        keyword_weight=body.keyword_weight,
        fusion=body.fusion,
        group_by_document=body.group_by_document,
    )


class ResearchRequest(BaseModel):
    """A question to research in the knowledge base, the memory and allow-listed pages."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000, description="The question.")
    limit: int = Field(8, ge=1, le=50, description="Document chunks (and memories) to gather.")
    urls: list[str] = Field(
        default_factory=list, max_length=50, description="Pages to read too (rag.allowed_url_hosts only)."
    )
    use_memory: bool = Field(True, description="Also recall from the agent memory.")
    answer: bool = Field(
        True,
        description="Have the local model write a cited answer (loads it on first use); false returns "
        "the ranked evidence only.",
    )
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    collection: str = CollectionField


@router.post("/research")
async def research_query(body: ResearchRequest, state: State, caller: Caller) -> ResearchReport:
    """Research a question: hybrid search, memory recall and allow-listed URLs ranked as evidence,
    and a short answer citing [chunk:ID] when the local model answers (the research_query tool)."""
    check_tool(caller, "research_query", {"use_memory": body.use_memory, "collection": body.collection})
    return await research(
        state.collection(body.collection),
        body.query,
        limit=body.limit,
        urls=body.urls,
        filter=body.filter,
        use_memory=body.use_memory,
        memory=state.memory,
        llm=state.llm,
        answer=body.answer,
    )
