"""RFC 9457 problem details: every error of the REST API, one shape, a message a person can act on."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
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


def domain_problem(exc: McpGemmaError) -> JSONResponse:
    """The problem response of a domain error."""
    for cls, status, slug in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            headers = {"Retry-After": str(getattr(exc, "retry_after", 1))} if status in (429, 503) else None
            return problem(
                status, cls.__name__, str(exc), kind=f"urn:mcp-gemma:problem:{slug}", headers=headers
            )
    return problem(500, "McpGemmaError", str(exc), kind="urn:mcp-gemma:problem:error")


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

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, "HTTP error", str(exc.detail), headers=dict(exc.headers or {}))

    app.add_exception_handler(McpGemmaError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
