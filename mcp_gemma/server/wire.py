"""Screening of stdio request lines: a line that is not a JSON-RPC message gets an error response.

The SDK's stdio transport hands an unparsable line to the session as an exception, which logs it
and answers nothing, and it reads a request whose id is not a string or an integer (``1.5``,
``true``, ``null``) as a notification, which is never answered either: the client waits forever.
JSON-RPC 2.0 says a parse error is answered with ``-32700`` and id null, an invalid request with
``-32600`` and the request's id when it can be read, else null. Here stdio gets that before the SDK
sees the line. Over HTTP the SDK answers most of it itself, but a message whose id is not a string or
an integer was also taken as a notification (``202 Accepted``, never answered): :class:`HttpIdCheck`
answers it with ``400`` and ``-32600``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic_core
from mcp_types import INVALID_REQUEST, PARSE_ERROR, jsonrpc_message_adapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_DETAIL_LIMIT = 200


def _error_line(code: int, message: str, request_id: str | int | None) -> bytes:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return (json.dumps(body, ensure_ascii=True) + "\n").encode("ascii")


def _readable_id(message: dict[str, Any]) -> str | int | None:
    """The message's id when it is one JSON-RPC allows here (a string or an integer), else None."""
    value = message.get("id")
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def _envelope_problem(message: dict[str, Any]) -> str | None:
    """Why ``message`` is not a JSON-RPC 2.0 request, notification or response, or None."""
    if message.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be the string \"2.0\""
    has_id = "id" in message
    if has_id and _readable_id(message) is None:
        return "'id' must be a string or an integer"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "'method' must be a string"
        if "params" in message and not isinstance(message["params"], dict):
            return "'params' must be an object"
        return None
    if not has_id:
        return "a message needs a 'method' (request or notification) or an 'id' (response)"
    if ("result" in message) == ("error" in message):
        return "a response has exactly one of 'result' and 'error'"
    return None


def _shape(message: dict[str, Any]) -> str:
    """The SDK model a message of this shape must validate as."""
    if "method" in message:
        return "JSONRPCRequest" if "id" in message else "JSONRPCNotification"
    return "JSONRPCError" if "error" in message else "JSONRPCResponse"


def screen_line(raw: bytes) -> tuple[str | None, bytes | None]:
    """``(line, None)`` for a well-formed message, ``(None, error response)`` otherwise.

    A blank line is ``(None, None)``: nothing to pass on and nothing to answer.
    """
    if not raw.strip():
        return None, None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _error_line(PARSE_ERROR, f"Parse error: the line is not UTF-8 ({exc.reason})", None)
    try:
        # The SDK's own JSON parser, so a line accepted here parses the same way there (a lone
        # surrogate escape, for one, is refused by both).
        message = pydantic_core.from_json(line, allow_inf_nan=False)
    except ValueError as exc:
        return None, _error_line(PARSE_ERROR, f"Parse error: {str(exc)[:_DETAIL_LIMIT]}", None)
    if isinstance(message, list):
        return None, _error_line(
            INVALID_REQUEST, "Invalid request: batches (JSON arrays) are not supported", None
        )
    if not isinstance(message, dict):
        return None, _error_line(INVALID_REQUEST, "Invalid request: a message must be a JSON object", None)
    problem = _envelope_problem(message)
    if problem is None:
        try:
            jsonrpc_message_adapter.validate_python(message, by_name=False)
        except pydantic_core.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            # The union reports every member; the one matching the message's shape says what is wrong.
            shape = _shape(message)
            first = next((e for e in errors if e["loc"] and e["loc"][0] == shape), errors[0])
            where = ".".join(str(part) for part in first["loc"][1:]) or "message"
            problem = f"{where}: {first['msg']}"
    if problem is not None:
        return None, _error_line(
            INVALID_REQUEST, f"Invalid request: {problem}"[:_DETAIL_LIMIT], _readable_id(message)
        )
    return line, None


def bad_id_error(body: bytes) -> bytes | None:
    """The ``-32600`` error body for a JSON-RPC object whose id is not a string or an integer, else None
    (anything else, valid or not, is the SDK's to answer)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or "id" not in message or _readable_id(message) is not None:
        return None
    return _error_line(INVALID_REQUEST, "Invalid request: 'id' must be a string or an integer", None).rstrip(
        b"\n"
    )


class HttpIdCheck:
    """ASGI wrapper: a POST to one of ``paths`` whose JSON-RPC id is not a string or an integer gets
    ``400`` and a ``-32600`` error instead of the SDK's silent ``202``.

    It reads the body up to ``limit`` bytes (the transport's own request limit); a larger body passes
    through as it came, for the SDK to refuse.
    """

    def __init__(self, app: ASGIApp, paths: Sequence[str], limit: int) -> None:
        self.app = app
        self.paths = frozenset(p.rstrip("/") for p in paths)
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or str(scope.get("path", "")).rstrip("/") not in self.paths
        ):
            await self.app(scope, receive, send)
            return
        taken: list[Message] = []
        size, complete = 0, False
        while size <= self.limit:
            message = await receive()
            taken.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        if complete and size <= self.limit:
            error = bad_id_error(b"".join(m.get("body", b"") for m in taken))
            if error is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(error)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": error})
                return

        async def replay() -> Message:
            return taken.pop(0) if taken else await receive()

        await self.app(scope, replay, send)
