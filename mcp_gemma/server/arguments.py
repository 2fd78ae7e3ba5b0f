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
from pydantic import create_model, model_validator


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


def strict_arguments(server: MCPServer[Any]) -> None:
    """Make every registered tool refuse unknown arguments and booleans for numbers."""
    # The SDK has no public hook for the argument model; its tool manager holds the tools.
    for tool in server._tool_manager.list_tools():
        metadata = tool.fn_metadata
        base = metadata.arg_model
        fields = base.model_fields
        known = frozenset(field.alias or name for name, field in fields.items())
        numeric = frozenset(
            field.alias or name for name, field in fields.items() if _numeric(field.annotation)
        )
        metadata.arg_model = create_model(
            base.__name__,
            __base__=base,
            __validators__={"strict_arguments": _checker(tool.name, known, numeric)},
        )
        tool.parameters["additionalProperties"] = False
