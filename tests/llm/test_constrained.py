"""Constrained decoding with the real Gemma 270M: its vocabulary, forced spans, every kind of mask."""

from __future__ import annotations

import json
import threading

import pytest

from mcp_gemma.agent.actions import action_grammar
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.grammar import schema_grammar, validate

pytestmark = pytest.mark.model

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "city": {"enum": ["Paris", "London", "Berlin"]},
        "likes": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "city", "likes"],
}


def test_vocabulary_sets_match_their_definitions(gemma: GemmaModel) -> None:
    vocab = gemma.vocabulary()
    assert len(vocab) == 262_144 and vocab is gemma.vocabulary()  # built once
    safe = [vocab.pieces[i] for i in vocab.safe_ids[:5000]]
    assert all(p and '"' not in p and "\\" not in p and "\n" not in p for p in safe)
    assert all(vocab.pieces[i].find('"') == n for i, n in zip(vocab.close_ids, vocab.close_len, strict=True))
    assert vocab.pieces[vocab.by_text['"'][0]] == '"' and vocab.pieces[vocab.by_text[" hello"][0]] == " hello"
    assert vocab.pieces[0] == "" and vocab.pieces[1] == ""  # <pad>, <eos>: never allowed


def test_extraction_is_schema_valid_and_exact(gemma: GemmaModel) -> None:
    prompt = "Alice is 31 years old and lives in Berlin. She likes chess and tea.\nJSON:"
    result = gemma.generate_constrained(prompt, schema_grammar(PERSON), max_new_tokens=80)
    assert result.finish_reason == "stop"
    assert result.text == '{"name": "Alice", "age": 31, "city": "Berlin", "likes": ["chess"]}'
    validate(json.loads(result.text), PERSON)


def test_free_text_after_a_forced_span_matches_unconstrained_greedy(gemma: GemmaModel) -> None:
    """Where the grammar allows what the model wants anyway, constraining changes nothing."""
    prompt = 'Question: What is the capital of France?\nJSON: {"answer": "'
    free = gemma.generate(prompt, max_new_tokens=8, stop=('"',))
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 40}}}
    constrained = gemma.generate_constrained(
        "Question: What is the capital of France?\nJSON:", schema_grammar(schema), max_new_tokens=20
    )
    assert json.loads(constrained.text)["answer"] == free.text == "Paris"


def test_numbers_booleans_null_and_arrays(gemma: GemmaModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "pi": {"type": "number"},
            "even": {"type": "boolean"},
            "none": {"type": "null"},
            "tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 4},
        },
    }
    result = gemma.generate_constrained(
        "Pi to two decimals, whether 4 is even, and no tags.\nJSON:",
        schema_grammar(schema),
        max_new_tokens=60,
    )
    value = json.loads(result.text)
    validate(value, schema)
    # the 270M base model's greedy values: the grammar guarantees the shape, not the wisdom
    assert value == {"pi": 4, "even": False, "none": None, "tags": [1, 2, 3, 4]}


def test_action_grammar_names_a_registered_tool(gemma: GemmaModel) -> None:
    tools = {
        "calculator": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": []}
    }
    prompt = 'Task: What is 2 + 2?\nAction: {"thought": "I add.", "action": "calculator", '
    prompt += '"action_input": {"expression": "2 + 2"}}\n\nTask: What is 12 * 7?\nAction:'
    result = gemma.generate_constrained(prompt, action_grammar(tools), max_new_tokens=60)
    action = json.loads(result.text)
    assert action == {"thought": "12 * 7", "action": "calculator", "action_input": {"expression": "12 * 7"}}


def test_budget_and_cancellation_end_without_a_value(gemma: GemmaModel) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 200}}}
    short = gemma.generate_constrained("Write a long story.\nJSON:", schema_grammar(schema), max_new_tokens=5)
    assert short.finish_reason == "length" and short.tokens_out >= 5
    cancel = threading.Event()
    cancel.set()
    stopped = gemma.generate_constrained("x", schema_grammar(schema), max_new_tokens=50, cancel=cancel)
    assert stopped.finish_reason == "cancelled" and stopped.text == '{"s": "'


def test_sampling_is_reproducible_with_a_seed(gemma: GemmaModel) -> None:
    schema = {"enum": ["red", "green", "blue", "yellow"]}
    runs = [
        gemma.generate_constrained(
            "Favourite colour:", schema_grammar(schema), max_new_tokens=8, temperature=1.5, seed=s
        )
        for s in (1, 1, 2)
    ]
    assert runs[0].text == runs[1].text and all(json.loads(r.text) in schema["enum"] for r in runs)
