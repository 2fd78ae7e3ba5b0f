"""Knowledge-base tools and the ``doc://{id}{?collection}`` resource: thin adapters over :class:`RagService`.

Every tool takes ``collection`` (default ``"default"``, the server's knowledge base) and uses that
collection's service (:meth:`AppState.collection`); the access middleware checks the principal may.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_gemma.errors import InvalidInputError, McpGemmaError, NotFoundError
from mcp_gemma.rag.models import (
    BatchIngestReport,
    DeleteReport,
    DocumentInput,
    DocumentList,
    DocumentRecord,
    IngestReport,
    ResearchReport,
    SearchResult,
    SemanticSearchResult,
    SyncReport,
)
from mcp_gemma.rag.names import COLLECTION_HELP, COLLECTION_PATTERN, DEFAULT_COLLECTION
from mcp_gemma.server.notify import doc_uri, resources_updated
from mcp_gemma.state import AppState

Query = Annotated[
    str, Field(min_length=1, max_length=10_000, description="What to look for, in plain words.")
]
Limit = Annotated[
    int, Field(ge=1, le=10_000, description="How many results to return (at most rag.max_results).")
]
Filter = Annotated[
    dict[str, Any] | None,
    Field(
        description='Metadata filter, all fields must match: {"lang": "en"} (equality; a list field matches '
        'when it contains the value), {"tag": {"$in": ["a", "b"]}}, {"year": {"$gte": 2020, "$lt": 2024}}; '
        '"doc_id" filters by document id. A field no document has is an error.'
    ),
]
GroupByDocument = Annotated[
    bool,
    Field(
        description="Return documents, not chunks: the best chunk of each of `limit` documents, with how "
        "many of its chunks matched and its neighbouring chunks' offsets."
    ),
]
Collection = Annotated[str, Field(pattern=COLLECTION_PATTERN, description=COLLECTION_HELP)]
DocId = Annotated[str, Field(min_length=1, max_length=512, description="Document id (see list_documents).")]

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)


def _state(ctx: Context[AppState]) -> AppState:
    return ctx.request_context.lifespan_context


def register(server: MCPServer[AppState]) -> None:
    """Add the knowledge-base tools and the ``doc://{id}{?collection}`` resource to ``server``."""

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def ingest_document(
        ctx: Context[AppState],
        text: Annotated[
            str, Field(min_length=1, description="The document's text (plain text or markdown).")
        ],
        id: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=512,
                description="Document id; re-using an id replaces that document. "
                "Default: from the content hash.",
            ),
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description='JSON metadata to filter on later, e.g. {"lang": "en", "year": 2024}.'),
        ] = None,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> IngestReport:
        """Add one document to the knowledge base: chunk, embed and index it. Idempotent: the same text and
        metadata under the same id change nothing; new text under an existing id replaces that document."""

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        report = (
            await _state(ctx)
            .collection(collection)
            .ingest(text, doc_id=id, metadata=metadata, progress=progress)
        )
        if report.status != "unchanged":
            await resources_updated(ctx, [doc_uri(report.id, collection)])
        return report

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def batch_ingest(
        ctx: Context[AppState],
        documents: Annotated[
            list[DocumentInput] | None,
            Field(
                max_length=10_000,
                description='Inline documents: [{"text": ..., "id"?: ..., "metadata"?: ...}].',
            ),
        ] = None,
        paths: Annotated[
            list[str] | None,
            Field(
                max_length=1_000,
                description="Files or folders under the server's allowed roots "
                "(relative to a root, or absolute). "
                "Formats: text of any name and encoding, md, rst, html, pdf, json, jsonl, also .gz, .bz2, "
                ".xz; binary files and hidden entries the glob does not name are listed in failed with "
                "a reason.",
            ),
        ] = None,
        glob: Annotated[
            str,
            Field(
                min_length=1, max_length=200, description="Which files of a folder to read, e.g. '**/*.md'."
            ),
        ] = "**/*",
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Metadata added to every document from paths.")
        ] = None,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> BatchIngestReport:
        """Ingest many documents, given inline or as files / folders under the allowed roots, with progress.
        A bad document or file is reported in 'failed' and skipped; the others go in."""
        if (documents is None) == (paths is None):
            raise InvalidInputError(
                "give either 'documents' (inline) or 'paths' (files and folders), not both"
            )
        rag = _state(ctx).collection(collection)

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        if documents is not None:
            report = await rag.ingest_documents(documents, progress=progress)
        else:
            report = await rag.ingest_paths(paths or [], pattern=glob, metadata=metadata, progress=progress)
        await resources_updated(
            ctx, [doc_uri(r.id, collection) for r in report.ingested if r.status != "unchanged"]
        )
        return report

    @server.tool(annotations=READ_ONLY)
    async def search_documents(
        ctx: Context[AppState],
        query: Query,
        limit: Limit = 5,
        min_score: Annotated[
            float | None, Field(ge=-1.0, le=1.0, description="Drop chunks below this cosine similarity.")
        ] = None,
        filter: Filter = None,
        group_by_document: GroupByDocument = False,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> SearchResult:
        """Pure vector (meaning) search over document chunks, by cosine similarity; hits carry doc id, offsets
        and score for citation. For words and names as well as meaning, use hybrid_search."""
        return (
            await _state(ctx)
            .collection(collection)
            .search(
                query, limit=limit, min_score=min_score, filter=filter, group_by_document=group_by_document
            )
        )

    @server.tool(annotations=READ_ONLY)
    async def semantic_search(
        ctx: Context[AppState],
        query: Query,
        limit: Limit = 5,
        diversity: Annotated[
            float, Field(ge=0.0, le=1.0, description="0 = pure relevance, 1 = maximal novelty (MMR).")
        ] = 0.1,
        context_chunks: Annotated[
            int, Field(ge=0, le=5, description="Neighbouring chunks stitched in on each side of a match.")
        ] = 1,
        min_score: Annotated[
            float | None, Field(ge=-1.0, le=1.0, description="Drop matches below this cosine similarity.")
        ] = None,
        filter: Filter = None,
        group_by_document: GroupByDocument = False,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> SemanticSearchResult:
        """LLM-ready passages for a question: candidates from hybrid search (BM25 + vector, as hybrid_search
        ranks them), made diverse by MMR, each with its neighbouring chunks as context and the source
        document id and offsets for citation."""
        return (
            await _state(ctx)
            .collection(collection)
            .semantic_search(
                query,
                limit=limit,
                filter=filter,
                diversity=diversity,
                context_chunks=context_chunks,
                min_score=min_score,
                group_by_document=group_by_document,
            )
        )

    @server.tool(annotations=READ_ONLY)
    async def hybrid_search(
        ctx: Context[AppState],
        query: Query,
        limit: Limit = 5,
        keyword_weight: Annotated[
            float | None,
            Field(
                ge=0.0,
                le=1.0,
                description="Fix the BM25 share, 0..1 (implies fusion='weighted'); default: chosen per "
                "query by how much of it the best keyword match covers.",
            ),
        ] = None,
        fusion: Annotated[
            Literal["adaptive", "coverage", "weighted", "rrf"] | None,
            Field(
                description="'adaptive' (BM25 share chosen per query), 'coverage' (the same share; keyword "
                "evidence = half BM25, half the share of the query's rare words the chunk holds), 'weighted' "
                "(keyword_weight) or 'rrf' (reciprocal rank); default rag.fusion ('adaptive')."
            ),
        ] = None,
        filter: Filter = None,
        group_by_document: GroupByDocument = False,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> SearchResult:
        """Keyword (BM25) and vector search fused: finds exact names and copied sentences as well as
        paraphrases. The result says which fusion and BM25 share were used."""
        return (
            await _state(ctx)
            .collection(collection)
            .hybrid_search(
                query,
                limit=limit,
                filter=filter,
                keyword_weight=keyword_weight,
                fusion=fusion,
                group_by_document=group_by_document,
            )
        )

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=True)
    )
    async def research_query(
        ctx: Context[AppState],
        query: Query,
        limit: Annotated[
            int, Field(ge=1, le=50, description="Document chunks (and memories) to gather.")
        ] = 8,
        urls: Annotated[
            list[str],
            Field(
                max_length=50, description="Web pages to read as well; only hosts on rag.allowed_url_hosts."
            ),
        ] = [],  # noqa: B006 - pydantic copies defaults
        use_memory: Annotated[
            bool, Field(description="Also recall from the agent memory when available.")
        ] = True,
        answer: Annotated[
            bool,
            Field(
                description="Have the local model write a cited answer (loads it on first use, which takes a "
                "while); false returns the ranked evidence only."
            ),
        ] = True,
        filter: Filter = None,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> ResearchReport:
        """Research a question: hybrid search, memory recall and allow-listed URLs, ranked as evidence; when a
        local model is loaded, also a short answer citing [chunk:ID]. Without a model it says so."""
        from mcp_gemma.rag.research import research  # imports the services: not before a call

        state = _state(ctx)
        return await research(
            state.collection(collection),
            query,
            limit=limit,
            urls=urls,
            filter=filter,
            use_memory=use_memory,
            memory=getattr(state, "memory", None),
            llm=getattr(state, "llm", None),
            answer=answer,
        )

    @server.tool(annotations=READ_ONLY)
    async def list_documents(
        ctx: Context[AppState],
        offset: Annotated[
            int, Field(ge=0, description="Skip this many (use next_offset of the last page).")
        ] = 0,
        limit: Annotated[int, Field(ge=1, le=1_000, description="Documents per page.")] = 20,
        filter: Filter = None,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> DocumentList:
        """List documents, newest first, with metadata and sizes; paginated and filterable."""
        return (
            await _state(ctx).collection(collection).list_documents(offset=offset, limit=limit, filter=filter)
        )

    @server.tool(annotations=READ_ONLY)
    async def get_document(
        ctx: Context[AppState],
        id: DocId,
        include_text: Annotated[bool, Field(description="Return the full text.")] = True,
        include_chunks: Annotated[bool, Field(description="Return the chunks with ids and offsets.")] = False,
        collection: Collection = DEFAULT_COLLECTION,
    ) -> DocumentRecord:
        """One document: metadata, text and optionally its chunks."""
        return (
            await _state(ctx)
            .collection(collection)
            .get_document(id, include_text=include_text, include_chunks=include_chunks)
        )

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        )
    )
    async def delete_document(
        ctx: Context[AppState], id: DocId, collection: Collection = DEFAULT_COLLECTION
    ) -> DeleteReport:
        """Delete a document with all its chunks and index entries (for every server sharing this Redis)."""
        report = await _state(ctx).collection(collection).delete_document(id)
        await resources_updated(ctx, [doc_uri(report.id, collection)])
        return report

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def sync_folder(
        ctx: Context[AppState],
        path: Annotated[
            str,
            Field(min_length=1, max_length=4_096, description="A folder under the server's allowed roots."),
        ],
        glob: Annotated[
            str,
            Field(min_length=1, max_length=200, description="Which files of the folder, e.g. '**/*.md'."),
        ] = "**/*",
        collection: Collection = DEFAULT_COLLECTION,
    ) -> SyncReport:
        """Bring the knowledge base in step with a folder: ingest new and changed files (by content hash,
        unchanged ones cost nothing), and remove the documents earlier syncs of this folder created
        whose files are gone. Idempotent; files not ingested are listed with a reason."""

        from mcp_gemma.rag.sync import sync_folder as sync_folder_pass  # imports the services

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        report = await sync_folder_pass(
            _state(ctx).collection(collection), path, pattern=glob, progress=progress
        )
        await resources_updated(ctx, [doc_uri(i, collection) for i in [*report.changed, *report.removed]])
        return report

    @server.resource(
        "doc://{id}{?collection}",
        name="document",
        mime_type="text/plain",
        description="The text of a knowledge-base document (percent-encode '/' in ids; collection "
        "defaults to 'default').",
    )
    async def document_resource(id: str, ctx: Context[AppState], collection: str = DEFAULT_COLLECTION) -> str:
        """The full text of one document."""
        try:
            return await _state(ctx).collection(collection).document_text(id)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except McpGemmaError as exc:
            raise ResourceError(str(exc)) from exc
