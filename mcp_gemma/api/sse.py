"""Server-Sent Events: one event's bytes, and the OpenAPI entry of an SSE response."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from mcp_gemma.api.problems import problem_responses

EVENT_STREAM = "text/event-stream"


def sse_event(event: str, data: BaseModel | dict[str, Any], event_id: str | None = None) -> bytes:
    """``event: <event>`` with ``data`` as one line of JSON (and an ``id`` to resume after)."""
    payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


def sse_response(description: str, model: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for an operation answering JSON (``model``) or an event stream."""
    content: dict[str, Any] = {EVENT_STREAM: {"schema": {"type": "string", "description": description}}}
    ok: dict[str, Any] = {"description": "OK", "content": content}
    if model is not None:
        ok["model"] = model
    return {200: ok, **problem_responses(404, 422, 503)}


def wants_stream(accept: str | None) -> bool:
    """The client asked for ``text/event-stream`` rather than JSON."""
    return accept is not None and EVENT_STREAM in accept.lower()
