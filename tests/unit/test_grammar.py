"""JSON grammars and the constrained decoder, without a model.

The decoder runs here over a small deterministic stand-in vocabulary and a stand-in "model" that
prefers tokens in a given order; ``tests/llm/test_constrained.py`` runs it over the real Gemma
vocabulary and forward pass, and ``tests/integration/test_reason_structured.py`` through MCP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from mcp_gemma.agent.actions import action_grammar
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.llm.constrained import ConstrainedDecoder, Vocabulary
from mcp_gemma.llm.grammar import check_schema, schema_grammar, validate

PIECES = [
    '{"',
    "a",
    '":',
    " ",
    '"',
    "b",
    "c",
    "bc",
    '",',
    '"}',
    "1",
    "2",
    "0",
    "-",
    ".",
    "]",
    ",",
    "x",
    "\\",
    "\n",
]
PIECES += ["3", "true", "false", "tr", "[", "}", "ab."]
PIECES += [ch for ch in 'abcdefghijklmnopqrstuvwxyz_:{"' if ch not in PIECES]  # spell any forced text


def encode(text: str) -> list[int]:
    """Greedy longest-match over the stand-in vocabulary (enough to feed forced text)."""
    ids, i = [], 0
    while i < len(text):
        best = max((p for p in PIECES if text.startswith(p, i)), key=len)
        ids.append(PIECES.index(best))
        i += len(best)
    return ids


def decode(schema_or_grammar: Any, preferences: Sequence[str], steps: int = 200) -> tuple[str, int]:
    """Decode with a stand-in model whose logits rank ``preferences`` first, in order, at every step."""
    vocab = Vocabulary(PIECES)
    grammar = schema_grammar(schema_or_grammar) if isinstance(schema_or_grammar, dict) else schema_or_grammar
    decoder = ConstrainedDecoder(grammar, vocab, encode)
    logits = np.zeros(len(PIECES), dtype=np.float32)
    for rank, piece in enumerate(preferences):
        logits[PIECES.index(piece)] = 100.0 - rank
    decoder.take_feed()
    for _ in range(steps):
        if decoder.done:
            break
        decoder.advance(logits, lambda values: int(np.argmax(values)))
        decoder.take_feed()
    return decoder.text, decoder.chosen


def test_structure_is_forced_and_only_free_parts_are_chosen() -> None:
    schema = {"type": "object", "properties": {"k": {"const": 3}, "e": {"enum": ["bc", "x"]}}, "required": []}
    text, chosen = decode(schema, ["b"])
    assert text == '{"k": 3, "e": "bc"}' and chosen == 1  # 'b' picked, the rest of "bc" forced


def test_string_closes_on_a_quote_token_and_drops_what_follows_it() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string"}}}
    text, _ = decode(schema, ['"}', "b"])  # the stand-in model wants to end at once
    assert text == '{"s": ""}'
    text, _ = decode(schema, ["bc", '",'], steps=3)
    assert json.loads(text + '"}' if not text.endswith("}") else text)["s"].startswith("bc")


def test_string_never_contains_quotes_backslashes_or_control_characters() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 5}}}
    text, _ = decode(schema, ["\\", "\n", "x"])
    assert json.loads(text) == {"s": "xxxxx"}  # maxLength closed it


def test_string_stops_at_a_loop_and_at_the_end_marker() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 100}}}
    text, _ = decode(schema, ["bc"])
    assert json.loads(text) == {"s": "bcbcbc"}  # the same piece three times ends the string


def test_number_ends_when_the_model_prefers_a_non_digit() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    text, _ = decode(schema, ["1", "x"], steps=1)
    assert text == '{"n": 1'
    text, _ = decode(schema, ["x", "2"])  # a number must have a digit: the best digit is written first
    assert json.loads(text) == {"n": 2}


def test_number_has_no_leading_zeros_and_at_most_sixteen_characters() -> None:
    text, _ = decode({"type": "integer"}, ["0", "1"])
    assert text == "0"
    text, _ = decode({"type": "number"}, ["1"])
    assert text == "1" * 16 and isinstance(json.loads(text), int)


def test_arrays_respect_item_bounds() -> None:
    schema = {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 3}
    text, _ = decode(schema, ["]", "tr"])
    assert json.loads(text) == [True, True]
    text, _ = decode({"type": "array", "items": {"type": "integer"}}, ["]"])
    assert text == "[]"
    text, _ = decode({"type": "array", "items": {"type": "boolean"}, "maxItems": 3}, ["false", ","])
    assert json.loads(text) == [False, False, False]


def test_action_grammar_offers_registered_tools_and_their_arguments_only() -> None:
    tools = {
        "bc": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "x": {"type": "object", "properties": {}, "required": []},
    }
    text, _ = decode(action_grammar(tools), ["ab.", "bc", "1", "}"])
    assert json.loads(text) == {
        "thought": "ab.ab.ab.",
        "action": "bc",
        "action_input": {"n": 1},
    }  # loop guard


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "^a"}, "keyword 'pattern' (at schema) is not supported"),
        (
            {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}},
            "'anyOf' (at schema.properties.a)",
        ),
        ({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}}, "'minimum'"),
        ({"type": ["string", "null"]}, "needs a 'type' among"),
        ({"type": "array"}, "array without 'items'"),
        (
            {"type": "object", "properties": {}, "required": ["a"]},
            "requires 'a', which is not in its properties",
        ),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength is above maxLength"),
        ({"type": "nonsense"}, "not a valid JSON schema"),
        ({"enum": []}, "enum takes 1..256 values"),
        ([1], "must be a JSON object"),
    ],
)
def test_unsupported_schemas_are_refused_by_name(schema: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        check_schema(schema)
    assert message in str(err.value)


def test_oversized_schema_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "description": "x" * 400} for i in range(60)},
    }
    with pytest.raises(InvalidInputError, match="more than 20000"):
        check_schema(schema)


def test_validate_names_the_failing_place() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    validate({"a": 1}, schema)
    with pytest.raises(InvalidInputError, match="at a: 'x' is not of type 'integer'"):
        validate({"a": "x"}, schema)
