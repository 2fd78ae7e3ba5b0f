"""RFC 9457 problem details: every error of the REST API, one shape, a message a person can act on."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from mcp_gemma.errors import (
    AccessDeniedError,
    ConfigError,
    InvalidInputError,
    McpGemmaError,
    ModelUnavailableError,
    NotFoundError,
    OperationCancelledError,
    QuotaExceededError,
    RateLimitedError,
    ServerBusyError,
    StoreUnavailableError,
)

PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of gives its status.
STATUS_BY_ERROR: tuple[tuple[type[McpGemmaError], int, str], ...] = (
    (InvalidInputError, 422, "invalid-input"),
    (NotFoundError, 404, "not-found"),
    (AccessDeniedError, 403, "access-denied"),
    (RateLimitedError, 429, "rate-limited"),
    (QuotaExceededError, 507, "quota-exceeded"),
    (ServerBusyError, 503, "server-busy"),
    (StoreUnavailableError, 503, "store-unavailable"),
    (ModelUnavailableError, 503, "model-unavailable"),
    (OperationCancelledError, 409, "cancelled"),
    (ConfigError, 500, "configuration"),
)


class ProblemIssue(BaseModel):
    """One thing wrong with a request that does not match the schema."""

    location: str = Field(description="Where: body.field, query.name, path.id …")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, and what to do about it in ``detail``."""

    type: str = Field(description="urn:mcp-gemma:problem:<kind>, or about:blank.")
    title: str
    status: int
    detail: str = Field(description="A message a person can act on.")
    errors: list[ProblemIssue] | None = Field(None, description="Schema mismatches, for 422.")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses (the body is a :class:`Problem`)."""
    return {s: {"model": Problem, "description": HTTPStatus(s).phrase} for s in statuses}


# Every operation can answer these: the bearer check, the Host / Origin checks, rate limits.
COMMON_ERRORS = (401, 403, 421, 429)


def finish_openapi(app: FastAPI, extra_models: tuple[type[BaseModel], ...] = ()) -> dict[str, Any]:
    """The OpenAPI document, with every error response as ``application/problem+json`` of
    :class:`Problem` (FastAPI's own 422 schema is not what this API sends)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    models: tuple[type[BaseModel], ...] = (Problem, *extra_models)
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in doc.get("paths", {}).values():
        for op in path_item.values():
            responses = op.setdefault("responses", {})
            for status in COMMON_ERRORS:
                responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_JSON: {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = doc
    return doc


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A ``application/problem+json`` response."""
    body: dict[str, Any] = {"type": kind, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem_body(exc: McpGemmaError) -> dict[str, Any]:
    """The problem document of a domain error (also sent as an SSE ``error`` event mid-stream)."""
    for cls, status, slug in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return {
                "type": f"urn:mcp-gemma:problem:{slug}",
                "title": cls.__name__,
                "status": status,
                "detail": str(exc),
            }
    return {
        "type": "urn:mcp-gemma:problem:error",
        "title": "McpGemmaError",
        "status": 500,
        "detail": str(exc),
    }


def domain_problem(exc: McpGemmaError) -> JSONResponse:
    """The problem response of a domain error."""
    body = domain_problem_body(exc)
    status = int(body["status"])
    headers = {"Retry-After": str(getattr(exc, "retry_after", 1))} if status in (429, 503) else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to problem+json."""

    async def on_domain(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, McpGemmaError)
        return domain_problem(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": ".".join(str(p) for p in err.get("loc", ())), "message": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem(
            422,
            "Invalid request",
            f"the request does not match the schema: {summary}",
            kind="urn:mcp-gemma:problem:invalid-input",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = str(exc.detail)
        if status == 413:
            limit = request.app.state.settings.http.max_request_bytes
            detail = (
                f"the request body is larger than http.max_request_bytes={limit:,}; send less (split a "
                "batch, upload a smaller file) or raise the limit"
            )
        elif status == 404:
            detail = f"nothing at {request.url.path}; the API's paths are listed at /docs and /openapi.json"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs for its methods"
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "HTTP error"
        return problem(status, title, detail, headers=dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback (it re-raises after this answer); the client gets no trace.
        return problem(
            500,
            "Internal Server Error",
            f"{request.method} {request.url.path} failed ({type(exc).__name__}); the server log has details",
            kind="urn:mcp-gemma:problem:internal",
        )

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(McpGemmaError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
