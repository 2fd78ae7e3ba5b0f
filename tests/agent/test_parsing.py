"""Tool-call parsing and repair of small-model output."""

from __future__ import annotations

import pytest

from mcp_gemma.agent.parsing import FinalAnswer, ParseFailure, ToolCall, parse_action
from mcp_gemma.agent.planner import parse_plan

CALC = {"expression": "2+2"}


@pytest.mark.parametrize(
    ("text", "repair"),
    [
        ('{"thought": "add", "tool": "calculator", "args": {"expression": "2+2"}}', None),
        ('```json\n{"tool": "calculator", "args": {"expression": "2+2"}}\n```', "fenced block"),
        ("{'tool': 'calculator', 'args': {'expression': '2+2'}}", "Python literal"),
        ('{"tool": "calculator", "args": {"expression": "2+2",},}', "trailing commas"),
        ('{"tool": "calculator", "args": {"expression": "2+2"', "closing brackets"),
        ('{tool: "calculator", args: {expression: "2+2"}}', "bare keys"),
        ('Sure! Here it is: {"tool": "calculator", "args": {"expression": "2+2"}} hope it helps', None),
        ('{"action": "calculator", "action_input": "{\\"expression\\": \\"2+2\\"}"}', "JSON string"),
        ('{"tool": {"name": "calculator", "arguments": {"expression": "2+2"}}}', None),
        ('Thought: add\nAction: calculator\nAction Input: {"expression": "2+2"}', "text form"),
        (
            "{\u201ctool\u201d: \u201ccalculator\u201d, "
            "\u201cargs\u201d: {\u201cexpression\u201d: \u201c2+2\u201d}}",
            None,
        ),
    ],
)
def test_tool_calls_are_read_and_repaired(text: str, repair: str | None) -> None:
    parsed = parse_action(text)
    assert isinstance(parsed, ToolCall), parsed
    assert (parsed.tool, parsed.args) == ("calculator", CALC)
    if repair is None:
        assert not any("Python" in r for r in parsed.repairs)
    else:
        assert any(repair in r for r in parsed.repairs), parsed.repairs


def test_plain_input_is_kept_for_the_loop_to_map() -> None:
    parsed = parse_action('{"tool": "calculator", "args": "2+2"}')
    assert isinstance(parsed, ToolCall) and parsed.args == {"__input__": "2+2"}


@pytest.mark.parametrize(
    "text",
    [
        '{"thought": "known", "answer": "4"}',
        "Thought: easy\nFinal Answer: 4",
        '{"tool": "final_answer", "args": "4"}',
        "```\n{'answer': '4'}\n```",
    ],
)
def test_final_answers(text: str) -> None:
    parsed = parse_action(text)
    assert isinstance(parsed, FinalAnswer) and parsed.answer == "4"


def test_reflection_is_kept_apart_from_thought() -> None:
    parsed = parse_action('{"reflection": "it was 4", "thought": "answer now", "answer": "4"}')
    assert isinstance(parsed, FinalAnswer)
    assert (parsed.reflection, parsed.thought) == ("it was 4", "answer now")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("I think the answer might be four.", "no JSON object found"),
        ('{"tool": 5}', 'names no "tool"'),
        ('{"tool": "calculator", "args": [1, 2]}', "must be a JSON object"),
        ("{{{{", "not valid JSON"),
        ('["calculator"]', "no JSON object"),
    ],
)
def test_unusable_output_says_what_is_wrong(text: str, needle: str) -> None:
    parsed = parse_action(text)
    assert isinstance(parsed, ParseFailure)
    assert needle in parsed.error


def test_huge_output_is_bounded() -> None:
    parsed = parse_action("{" * 100_000)
    assert isinstance(parsed, ParseFailure)


@pytest.mark.parametrize(
    "text",
    [
        '{"plan": ["find x", "add y"]}',
        '["find x", "add y"]',
        "Plan:\n1. find x\n2. add y",
        "- find x\n- add y",
    ],
)
def test_plans(text: str) -> None:
    assert parse_plan(text) == ["find x", "add y"]
