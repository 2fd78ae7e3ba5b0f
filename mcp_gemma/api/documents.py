"""``/v1/documents``: ingest (JSON or a file upload), list, get and delete knowledge-base documents."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_gemma.api.access import Caller, checked
from mcp_gemma.api.deps import State
from mcp_gemma.api.problems import problem_responses
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag.collections import (
    COLLECTION_HELP,
    COLLECTION_PATTERN,
    DEFAULT_COLLECTION,
    check_collection,
)
from mcp_gemma.rag.models import DeleteReport, DocumentList, DocumentRecord, IngestReport

router = APIRouter(prefix="/v1", tags=["documents"], responses=problem_responses(413, 415, 503))

DocId = Annotated[
    str, Path(min_length=1, max_length=512, description="Document id ('/' may stay unencoded).")
]
CollectionQuery = Annotated[str, Query(pattern=COLLECTION_PATTERN, description=COLLECTION_HELP)]
CollectionField = Field(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN, description=COLLECTION_HELP)
"""The ``collection`` of a request body (routes with a query string take :data:`CollectionQuery`)."""


class IngestRequest(BaseModel):
    """One document to add (or replace, under an existing id)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The document's text (plain text or markdown).")
    id: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Document id; re-using an id replaces that document. Default: from the content hash.",
    )
    metadata: dict[str, Any] | None = Field(
        None, description='JSON metadata to filter on later, e.g. {"lang": "en", "year": 2024}.'
    )
    collection: str = CollectionField


_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "txt, md, rst, html, pdf, json, jsonl.",
        },
        "id": {"type": "string", "minLength": 1, "maxLength": 512, "description": "Default: file:<name>."},
        "metadata": {"type": "string", "description": "A JSON object, added to the file's own metadata."},
        "collection": {
            "type": "string",
            "pattern": COLLECTION_PATTERN,
            "default": DEFAULT_COLLECTION,
            "description": COLLECTION_HELP,
        },
    },
}
_INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}},
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
        },
    }
}


def json_object(raw: str | None, name: str, example: str) -> dict[str, Any] | None:
    """A parameter sent as JSON text that must be an object (``filter``, upload ``metadata``)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{name} is not valid JSON ({exc.msg} at {exc.pos}); send a JSON object such as {example}"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{name} must be a JSON object, e.g. {example}")
    return value


def parse_filter(raw: str | None) -> dict[str, Any] | None:
    """The ``filter`` query parameter: a JSON object, or absent."""
    return json_object(raw, "filter", '{"lang": "en"}')


def _invalid(exc: ValidationError, where: str) -> RequestValidationError:
    errors = exc.errors(include_url=False)
    for err in errors:
        err["loc"] = (where, *err["loc"])
    return RequestValidationError(errors)


async def _ingest_upload(request: Request, state: State, caller: Caller) -> IngestReport:
    try:
        form = await request.form(max_files=1, max_fields=3)
    except HTTPException as exc:
        raise HTTPException(
            exc.status_code,
            f"the multipart body cannot be read ({exc.detail}); send one 'file' part, and optionally "
            "'id', 'metadata' and 'collection' text fields",
        ) from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInputError("the multipart body has no 'file' part; send the document as file=@<path>")
    doc_id = form.get("id")
    raw_meta = form.get("metadata")
    if doc_id is not None and (not isinstance(doc_id, str) or not 1 <= len(doc_id) <= 512):
        raise InvalidInputError("id must be text of 1 to 512 characters")
    metadata = json_object(raw_meta, "metadata", '{"lang": "en"}') if isinstance(raw_meta, str) else None
    if raw_meta is not None and not isinstance(raw_meta, str):
        raise InvalidInputError("metadata must be a JSON object sent as a text field, not a file")
    raw_collection = form.get("collection", DEFAULT_COLLECTION)
    if not isinstance(raw_collection, str):
        raise InvalidInputError("collection must be a text field, not a file")
    collection = check_collection(raw_collection)
    data = await upload.read()
    ids = [f"doc:{doc_id or 'file:' + (upload.filename or '')}", *_collection_ids(collection)]
    async with checked(state, caller, "ingest_document", {"collection": collection}, ids):
        return await state.collection(collection).ingest_file(
            upload.filename or "", data, doc_id=doc_id, metadata=metadata
        )


def _collection_ids(collection: str) -> list[str]:
    """The audit id of a collection other than the default one."""
    return [] if collection == DEFAULT_COLLECTION else [f"collection:{collection}"]


@router.post("/documents", openapi_extra=_INGEST_BODY, responses=problem_responses(400, 422))
async def ingest_document(request: Request, state: State, caller: Caller) -> IngestReport:
    """Add one document: JSON ``{"text", "id"?, "metadata"?}``, or a file as ``multipart/form-data``
    (``file``, optional ``id`` and ``metadata`` as a JSON string). Re-sending the same text and
    metadata under the same id changes nothing (status ``unchanged``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _ingest_upload(request, state, caller)
    if kind != "application/json":
        raise HTTPException(
            415, f"unsupported content type {kind or '(none)'}: send application/json or multipart/form-data"
        )
    try:
        body = IngestRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    ids = [*([f"doc:{body.id}"] if body.id else []), *_collection_ids(body.collection)]
    async with checked(state, caller, "ingest_document", {"collection": body.collection}, ids):
        return await state.collection(body.collection).ingest(
            body.text, doc_id=body.id, metadata=body.metadata
        )


@router.get("/documents")
async def list_documents(
    state: State,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, description="Skip this many (next_offset of the last page).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1_000, description="Documents per page.")] = 20,
    filter: Annotated[
        str | None,
        Query(
            max_length=10_000,
            description='Metadata filter as a JSON object: {"lang": "en"}, {"tag": {"$in": ["a", "b"]}}, '
            '{"year": {"$gte": 2020}}.',
        ),
    ] = None,
    collection: CollectionQuery = DEFAULT_COLLECTION,
) -> DocumentList:
    """Documents, newest first, with metadata and sizes; paginated and filterable."""
    async with checked(
        state, caller, "list_documents", {"collection": collection}, _collection_ids(collection)
    ):
        return await state.collection(collection).list_documents(
            offset=offset, limit=limit, filter=parse_filter(filter)
        )


@router.get("/documents/{id:path}", responses=problem_responses(404))
async def get_document(
    state: State,
    caller: Caller,
    id: DocId,
    include_text: Annotated[bool, Query(description="Return the full text.")] = True,
    include_chunks: Annotated[bool, Query(description="Return the chunks with ids and offsets.")] = False,
    collection: CollectionQuery = DEFAULT_COLLECTION,
) -> DocumentRecord:
    """One document: metadata, text and optionally its chunks."""
    ids = [f"doc:{id}", *_collection_ids(collection)]
    async with checked(state, caller, "get_document", {"id": id, "collection": collection}, ids):
        return await state.collection(collection).get_document(
            id, include_text=include_text, include_chunks=include_chunks
        )


@router.delete("/documents/{id:path}", responses=problem_responses(404))
async def delete_document(
    state: State, caller: Caller, id: DocId, collection: CollectionQuery = DEFAULT_COLLECTION
) -> DeleteReport:
    """Delete a document with its chunks and index entries."""
    args = {"id": id, "collection": collection}
    async with checked(state, caller, "delete_document", args, [f"doc:{id}", *_collection_ids(collection)]):
        return await state.collection(collection).delete_document(id)
