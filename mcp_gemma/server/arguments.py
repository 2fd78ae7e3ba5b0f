"""Tool arguments are taken as sent, or refused: no unknown names, no ``true`` for a number.

The SDK validates arguments with a pydantic model in lax mode that ignores extra keys: a
misspelt argument (``limt``) was dropped silently and its default used, and ``limit: true``
became 1. After registration each tool's argument model is replaced by a subclass that refuses
both with a message naming the arguments, and its input schema says ``additionalProperties:
false`` so clients can tell before calling.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError, create_model, model_validator

_STRICT = "strict_arguments"


def _numeric(annotation: Any) -> bool:
    """Whether a parameter's type admits an int or a float (so pydantic would turn a bool into one)."""
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    return any(option in (int, float) for option in options)


def _checker(tool: str, known: frozenset[str], numeric: frozenset[str]) -> Any:
    def check(cls: type, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "no arguments"
            raise ValueError(
                f"unknown argument(s) {', '.join(map(repr, unknown))} for {tool}; it takes: {takes}"
            )
        flags = sorted(name for name in numeric if isinstance(data.get(name), bool))
        if flags:
            raise ValueError(
                f"argument(s) {', '.join(map(repr, flags))} of {tool} must be numbers, not true/false"
            )
        return data

    return model_validator(mode="before")(check)


def strict_arguments(server: MCPServer[Any], *, build_models: bool = True) -> None:
    """Make every registered tool refuse unknown arguments and booleans for numbers.

    Its input schema says so at once. With ``build_models=False`` each argument model is swapped
    on the tool's first call instead (:func:`ensure_strict`, which the server's ``call_tool``
    runs): building them all takes ~10 ms that ``tools/list`` would otherwise wait for.
    """
    # The SDK has no public hook for the argument model; its tool manager holds the tools.
    for tool in server._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False
        if build_models:
            ensure_strict(tool)


def ensure_strict(tool: Tool) -> None:
    """Give ``tool`` (one :func:`strict_arguments` saw) its refusing argument model, once."""
    metadata = tool.fn_metadata
    base = metadata.arg_model
    marked = tool.parameters.get("additionalProperties") is False
    if not marked or _STRICT in base.__pydantic_decorators__.model_validators:
        return
    fields = base.model_fields
    known = frozenset(field.alias or name for name, field in fields.items())
    numeric = frozenset(field.alias or name for name, field in fields.items() if _numeric(field.annotation))
    metadata.arg_model = create_model(
        base.__name__,
        __base__=base,
        __validators__={_STRICT: _checker(tool.name, known, numeric)},
    )


_PREFIXES = ("Value error, ", "Assertion failed, ")
_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "true/false"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (dict, "an object"),
    ((list, tuple), "a list"),
    (type(None), "null"),
)


def _kind(value: Any) -> str:
    return next((name for types_, name in _KINDS if isinstance(value, types_)), type(value).__name__)


def refused_arguments(exc: ValidationError, *, shown: int = 5) -> str:
    """Why a tool's arguments were refused, short: each problem as ``where: what`` (a type
    mismatch says what was sent: ``(got a string)``), the places with the same problem together,
    the first ``shown`` problems and how many more.

    pydantic's own text repeats the argument model's name, quotes the input and links to its docs
    for every place: a list of 100 documents missing their ``text`` came back as ~18 KB.
    """
    errors = exc.errors(include_url=False)
    places: dict[str, list[str]] = {}
    for err in errors:
        what = err["msg"]
        for prefix in _PREFIXES:
            what = what.removeprefix(prefix)
        if err["type"].endswith(("_type", "_parsing")) and "input" in err:
            what += f" (got {_kind(err['input'])})"
        places.setdefault(what, []).append(".".join(str(p) for p in err["loc"]))
    parts = []
    for what, wheres in list(places.items())[:shown]:
        named = ", ".join(w for w in wheres[:3] if w)
        if len(wheres) > 3:
            named += f" and {len(wheres) - 3} more"
        parts.append(f"{named}: {what}" if named else what)
    more = f"; and {len(places) - shown} more problems" if len(places) > shown else ""
    return f"invalid arguments: {'; '.join(parts)}{more}"
