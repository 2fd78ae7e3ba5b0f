"""JSON grammars for constrained decoding: a JSON schema (a supported subset) as a sequence of requests.

A grammar is a generator of requests that :mod:`mcp_gemma.llm.constrained` turns into token masks:
:class:`Literal` text the structure dictates (braces, keys, punctuation) is emitted directly, and the
model only chooses where the schema leaves it freedom: one of a few texts (:class:`Choice`: an enum,
a boolean, a tool name, "another item or the end"), the contents of a string (:class:`FreeString`)
or a number (:class:`FreeNumber`). Each request receives the text that was chosen for it, so a later
part may depend on an earlier choice (the agent's ``action_input`` follows its ``action``).

Supported: ``type`` object (``properties``, ``required``; every listed property is written, in order,
and nothing else), string (``minLength``, ``maxLength``), integer, number, boolean, null, array
(``items``, ``minItems``, ``maxItems``), ``enum`` and ``const``. Annotations (``title``,
``description``, ``default``, ``examples``) are ignored. Anything else is refused with an
:class:`InvalidInputError` naming the keyword, rather than decoding output the schema would reject.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from mcp_gemma.errors import InvalidInputError

MAX_SCHEMA_CHARS = 20_000
MAX_DEPTH = 6
MAX_PROPERTIES = 64
MAX_ENUM = 256
DEFAULT_STRING_CHARS = 256
"""Longest string written where the schema sets no ``maxLength`` (the output stays schema-valid)."""
DEFAULT_ITEMS = 16
"""Most array items written where the schema sets no ``maxItems``."""
MAX_NUMBER_CHARS = 16

ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$comment", "$id", "additionalProperties"}
)
SUPPORTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "enum",
        "const",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
    }
)
TYPES = frozenset({"object", "string", "integer", "number", "boolean", "null", "array"})


@dataclass(frozen=True)
class Literal:
    """Text the grammar dictates; it is written as is."""

    text: str


@dataclass(frozen=True)
class Choice:
    """The model picks one of ``options`` (JSON texts); the chosen text is sent back."""

    options: tuple[str, ...]


@dataclass(frozen=True)
class FreeString:
    """The contents of a JSON string whose opening quote is written; ends with the closing quote."""

    min_chars: int
    max_chars: int
    end_at: str = ""
    """Close the string when its text ends with this and the model goes on with a space, a quote or a
    line break (e.g. "." for one sentence); "" never."""


@dataclass(frozen=True)
class FreeNumber:
    """A JSON number (``integer``: no fraction) that the model writes and ends."""

    integer: bool


@dataclass(frozen=True)
class Peek:
    """Either ``end`` (written) or nothing, by the model's next token: the opening of an empty array."""

    end: str


Request = Literal | Choice | FreeString | FreeNumber | Peek
Grammar = Generator[Request, str, None]


def check_schema(schema: Any, *, depth: int = 0, where: str = "schema") -> None:
    """Refuse schemas outside the supported subset with a message naming the keyword and the place."""
    if depth == 0:
        if not isinstance(schema, Mapping):
            raise InvalidInputError("json_schema must be a JSON object")
        try:
            size = len(json.dumps(schema))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"json_schema is not JSON: {exc}") from None
        if size > MAX_SCHEMA_CHARS:
            raise InvalidInputError(f"json_schema has {size} characters, more than {MAX_SCHEMA_CHARS}")
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(dict(schema))
        except SchemaError as exc:
            raise InvalidInputError(f"json_schema is not a valid JSON schema: {exc.message}") from None
    if not isinstance(schema, Mapping):
        raise InvalidInputError(f"{where} must be an object")
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{where} nests deeper than {MAX_DEPTH} levels")
    unknown = sorted(set(schema) - SUPPORTED - ANNOTATIONS)
    if unknown:
        raise InvalidInputError(
            f"json_schema keyword {unknown[0]!r} (at {where}) is not supported by constrained decoding; "
            f"supported: {', '.join(sorted(SUPPORTED))}"
        )
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        if not values or len(values) > MAX_ENUM:
            raise InvalidInputError(f"{where}: enum takes 1..{MAX_ENUM} values")
        return
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise InvalidInputError(
            f"{where} needs a 'type' among {', '.join(sorted(TYPES))} (or an 'enum' / 'const'); got {kind!r}"
        )
    if kind == "object":
        props = schema.get("properties", {})
        if len(props) > MAX_PROPERTIES:
            raise InvalidInputError(f"{where} has more than {MAX_PROPERTIES} properties")
        missing = [name for name in schema.get("required", []) if name not in props]
        if missing:
            raise InvalidInputError(f"{where} requires {missing[0]!r}, which is not in its properties")
        for name, sub in props.items():
            check_schema(sub, depth=depth + 1, where=f"{where}.properties.{name}")
    elif kind == "array":
        if "items" not in schema:
            raise InvalidInputError(f"{where} is an array without 'items'; say what the items are")
        check_schema(schema["items"], depth=depth + 1, where=f"{where}.items")
        low, high = _item_bounds(schema)
        if low > high:
            raise InvalidInputError(f"{where}: minItems is above the items written ({high})")
    elif kind == "string":
        low, high = _string_bounds(schema)
        if low > high:
            raise InvalidInputError(f"{where}: minLength is above maxLength")


def _string_bounds(schema: Mapping[str, Any]) -> tuple[int, int]:
    return int(schema.get("minLength", 0)), int(schema.get("maxLength", DEFAULT_STRING_CHARS))


def _item_bounds(schema: Mapping[str, Any]) -> tuple[int, int]:
    return int(schema.get("minItems", 0)), int(schema.get("maxItems", DEFAULT_ITEMS))


def value_grammar(schema: Mapping[str, Any], lead: str = "") -> Grammar:
    """The requests that write one value of ``schema`` (already checked by :func:`check_schema`).

    ``lead`` (a space after a key's colon) opens the value's first text, so the model sees ``: "``
    tokenized as it was trained, not a lone space token followed by a quote.
    """
    if "const" in schema:
        yield Literal(lead + json.dumps(schema["const"]))
        return
    if "enum" in schema:
        options = tuple(dict.fromkeys(lead + json.dumps(v) for v in schema["enum"]))
        yield Literal(options[0]) if len(options) == 1 else Choice(options)
        return
    kind = schema["type"]
    if kind == "object":
        yield from object_grammar(schema.get("properties", {}), lead)
    elif kind == "string":
        low, high = _string_bounds(schema)
        yield Literal(lead + '"')
        yield FreeString(low, high)
    elif kind in ("integer", "number"):
        if lead:
            yield Literal(lead)
        yield FreeNumber(integer=kind == "integer")
    elif kind == "boolean":
        yield Choice((lead + "true", lead + "false"))
    elif kind == "null":
        yield Literal(lead + "null")
    else:  # array
        yield from _array_grammar(schema, lead)


def object_grammar(properties: Mapping[str, Mapping[str, Any]], lead: str = "") -> Grammar:
    """``{"a": <value>, "b": <value>}`` with every property of ``properties``, in order."""
    yield Literal(lead + "{")
    for i, (name, sub) in enumerate(properties.items()):
        yield Literal(("" if i == 0 else ", ") + json.dumps(name) + ":")
        yield from value_grammar(sub, " ")
    yield Literal("}")


def _array_grammar(schema: Mapping[str, Any], lead: str) -> Grammar:
    low, high = _item_bounds(schema)
    yield Literal(lead + "[")
    count = 0
    if low == 0:
        if high == 0:
            yield Literal("]")
            return
        if (yield Peek("]")) == "]":
            return
    while True:
        yield from value_grammar(schema["items"], " " if count else "")
        count += 1
        if count >= high:
            break
        if count < low:
            yield Literal(",")
            continue
        if (yield Choice((",", "]"))) == "]":
            return
    yield Literal("]")


def schema_grammar(schema: Mapping[str, Any]) -> Grammar:
    """The grammar of ``schema`` after refusing what it cannot honour."""
    check_schema(schema)
    return value_grammar(schema)


def validate(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInputError` unless ``value`` is valid for ``schema`` (jsonschema)."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(dict(schema)).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "the value"
        raise InvalidInputError(f"the output is not valid for the schema at {where}: {first.message}")
