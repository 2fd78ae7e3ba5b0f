"""Checks on what callers send: document ids, text, metadata and search filters.

Every check raises :class:`InvalidInputError` with a message that says what to change.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_gemma.errors import InvalidInputError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Control, format (zero-width, bidi, soft hyphen), line / paragraph separators, surrogates.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
MAX_ID_CHARS = 512
MAX_METADATA_KEY_CHARS = 256
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
FILTER_OPS = ("$eq", "$in", *RANGE_OPS)
Scalar = str | int | float | bool | None


def check_doc_id(doc_id: str) -> str:
    """A document id as looked up: 1–512 characters without surrounding whitespace or controls."""
    if not doc_id or doc_id != doc_id.strip():
        raise InvalidInputError("document id must be non-empty and must not start or end with whitespace")
    if len(doc_id) > MAX_ID_CHARS:
        raise InvalidInputError(f"document id is {len(doc_id)} characters; the limit is {MAX_ID_CHARS}")
    if _CONTROL.search(doc_id):
        raise InvalidInputError("document id must not contain control characters")
    return doc_id


def new_doc_id(doc_id: str) -> str:
    """A document id for a new document: NFC-normalised, and only visible characters.

    Invisible (format: zero-width, bidi controls, soft hyphen), control and separator characters
    would let two ids that look alike (``doc1``, and ``doc1`` with U+200B inside) name two documents.
    """
    normal = unicodedata.normalize("NFC", check_doc_id(doc_id))
    for position, char in enumerate(normal):
        if unicodedata.category(char) in _INVISIBLE:
            name = unicodedata.name(char, "unnamed")
            raise InvalidInputError(
                f"document id contains U+{ord(char):04X} ({name}) at position {position}: ids must be "
                "visible characters (no control, zero-width, bidi or other format characters)"
            )
    return check_doc_id(normal)


def lookup_doc_ids(doc_id: str) -> list[str]:
    """The ids to look ``doc_id`` up under: its NFC form, then as given (stored before ids were NFC)."""
    check_doc_id(doc_id)
    normal = unicodedata.normalize("NFC", doc_id)
    return [normal] if normal == doc_id else [normal, doc_id]


def check_text(text: str, max_bytes: int, what: str = "text") -> int:
    """Refuse empty, binary-looking or over-limit text; return its size in UTF-8 bytes."""
    if not text.strip():
        raise InvalidInputError(
            f"{what} is empty: send the document's text (whitespace alone is not a document)"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode (lone surrogate at character {exc.start}): send UTF-8 text"
        ) from None
    if size > max_bytes:
        raise InvalidInputError(
            f"{what} is {size:,} bytes; the limit is {max_bytes:,} (rag.max_document_bytes): "
            "split the document "
            "or raise the limit"
        )
    if "\x00" in text:
        raise InvalidInputError(f"{what} contains NUL characters, so it looks binary: send plain text")
    return size


def _check_json_value(value: Any, path: str, depth: int, max_depth: int) -> None:
    # ``depth`` counts the objects and lists around ``value``; the check comes before the
    # recursion, so no nesting can exhaust Python's stack here or in whoever reads it back.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(
            f"metadata field {path!r} is {value}: NaN and infinity are not allowed in metadata"
        )
    if isinstance(value, Mapping | list | tuple) and depth >= max_depth:
        raise InvalidInputError(
            f"metadata nests objects and lists more than {max_depth} levels deep (at {path!r}); "
            "the limit is rag.max_metadata_depth: flatten it"
        )
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"metadata key {key!r} under {path!r} must be a string")
            if len(key) > MAX_METADATA_KEY_CHARS:
                raise InvalidInputError(
                    f"metadata key {key[:40]!r}... under {path or 'the top level'!r} is {len(key):,} "
                    f"characters; the limit is {MAX_METADATA_KEY_CHARS}"
                )
            _check_json_value(inner, f"{path}.{key}" if path else key, depth + 1, max_depth)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _check_json_value(inner, f"{path}[{i}]", depth + 1, max_depth)
    elif not isinstance(value, str | int | float | bool) and value is not None:
        raise InvalidInputError(
            f"metadata field {path!r} has type {type(value).__name__}; use JSON values only"
        )


def metadata_json(metadata: Mapping[str, Any] | None, max_bytes: int, max_depth: int = 16) -> str:
    """Canonical JSON of ``metadata`` (sorted keys).

    Refuses NaN, infinity, oversize objects, key names over ``MAX_METADATA_KEY_CHARS`` and
    objects or lists nested more than ``max_depth`` levels (the metadata object itself is one).
    """
    data = dict(metadata or {})
    _check_json_value(data, "", 0, max_depth)
    encoded = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(encoded.encode("utf-8")) > max_bytes:
        raise InvalidInputError(
            f"metadata is {len(encoded):,} bytes as JSON; the limit is {max_bytes:,} (rag.max_metadata_bytes)"
        )
    return encoded


def stored_metadata(metadata_json: str, max_depth: int) -> dict[str, Any]:
    """Stored metadata as shown to clients: anything nested past ``max_depth`` becomes a note.

    Documents stored before the depth limit may nest deeper; clients could not parse a listing or
    search result that held them. Redis keeps them whole (re-ingest or delete them to change that).
    """
    metadata: dict[str, Any] = json.loads(metadata_json)
    if metadata_json.count("{") + metadata_json.count("[") <= max_depth:  # cannot be deeper: as is
        return metadata
    clipped: dict[str, Any] = _clip(metadata, 1, max_depth)
    return clipped


def _clip(value: Any, depth: int, max_depth: int) -> Any:
    if not isinstance(value, dict | list):
        return value
    if depth > max_depth:
        return f"(nested deeper than {max_depth} levels, rag.max_metadata_depth; not shown)"
    if isinstance(value, dict):
        return {k: _clip(v, depth + 1, max_depth) for k, v in value.items()}
    return [_clip(v, depth + 1, max_depth) for v in value]


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"filter {where} is {value}: NaN and infinity cannot be matched")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise InvalidInputError(
        f"filter {where} must be a string, number, boolean or null, not {type(value).__name__}"
    )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"filter {where} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Condition:
    """One field's test: equality / membership, and/or a numeric range (all must hold)."""

    field: str
    equals: tuple[Scalar, ...] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def matches(self, value: Any) -> bool:
        """True when a document whose metadata has ``value`` in this field passes."""
        if isinstance(value, list):
            return any(self.matches(v) for v in value)
        if self.equals is not None and not any(_same(value, e) for e in self.equals):
            return False
        if self.gt is None and self.gte is None and self.lt is None and self.lte is None:
            return True
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        v = float(value)
        return not (
            (self.gt is not None and not v > self.gt)
            or (self.gte is not None and not v >= self.gte)
            or (self.lt is not None and not v < self.lt)
            or (self.lte is not None and not v <= self.lte)
        )


def _same(value: Any, wanted: Scalar) -> bool:
    # JSON has no bool/int distinction problem in the data, but Python has: True == 1 must not match.
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value is wanted
    return bool(value == wanted)


def parse_filter(raw: Mapping[str, Any] | None) -> list[Condition]:
    """Turn ``{"field": value | {"$in": [...]} | {"$gte": 1, "$lt": 5}}`` into conditions (ANDed)."""
    if not raw:
        return []
    conditions: list[Condition] = []
    for field, spec in raw.items():
        if not field:
            raise InvalidInputError("filter field names must be non-empty")
        if not isinstance(spec, Mapping):
            conditions.append(Condition(field, equals=(_scalar(spec, repr(field)),)))
            continue
        unknown = sorted(set(spec) - set(FILTER_OPS))
        if unknown or not spec:
            raise InvalidInputError(
                f"filter on {field!r} uses unknown operator(s) {unknown or '{}'}; "
                "use a value for equality or "
                f"an object with {', '.join(FILTER_OPS)}"
            )
        equals: tuple[Scalar, ...] | None = None
        if "$eq" in spec:
            equals = (_scalar(spec["$eq"], f"{field}.$eq"),)
        if "$in" in spec:
            options = spec["$in"]
            if not isinstance(options, list) or not options:
                raise InvalidInputError(f"filter {field}.$in must be a non-empty list of values")
            members = tuple(_scalar(v, f"{field}.$in") for v in options)
            equals = members if equals is None else tuple(v for v in equals if v in members)
        bounds = {op: _number(spec[op], f"{field}.{op}") for op in RANGE_OPS if op in spec}
        conditions.append(
            Condition(
                field,
                equals=equals,
                gt=bounds.get("$gt"),
                gte=bounds.get("$gte"),
                lt=bounds.get("$lt"),
                lte=bounds.get("$lte"),
            )
        )
    return conditions
