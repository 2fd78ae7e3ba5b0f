"""The local brain's action format: grammar, prompt and observations as the loop builds them.

The brain here is a stand-in that records its requests and replies with fixed actions (it says it
constrains its decoding, as the local Gemma does); ``tests/integration/test_agent.py`` runs the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_gemma.agent.actions import action_grammar, argument_schema, compact_observation, pick_examples
from mcp_gemma.agent.brain import BrainRequest
from mcp_gemma.agent.builtin_tools import ToolEnv, build_toolbox
from mcp_gemma.agent.react import ReactAgent, new_checkpoint
from mcp_gemma.llm.grammar import Choice, FreeString, Literal
from mcp_gemma.settings import load_settings

pytestmark = pytest.mark.anyio


class RecordingBrain:
    """Replies with fixed actions and keeps every request (a stand-in for the local Gemma)."""

    constrains_actions = True
    name = "recording"

    def __init__(self, replies: list[dict[str, object]]) -> None:
        self.replies = [json.dumps(r) for r in replies]
        self.requests: list[BrainRequest] = []

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        self.requests.append(request)
        return self.replies.pop(0)


def offered_actions(request: BrainRequest) -> tuple[str, ...]:
    """Walk the request's grammar up to the action choice and return its options."""
    assert request.action is not None
    grammar = request.action.grammar()
    assert next(grammar) == Literal('{"thought": "')
    assert isinstance(grammar.send(""), FreeString)
    assert grammar.send('x"') == Literal(', "action":')
    choice = grammar.send("")
    assert isinstance(choice, Choice)
    return choice.options


async def test_the_loop_sends_grammar_prompt_and_compact_observations(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    brain = RecordingBrain(
        [
            {"thought": "t", "action": "calculator", "action_input": {"expression": "6 * 7"}},
            {"thought": "t", "action": "final_answer", "action_input": {"answer": "42"}},
        ]
    )
    toolbox = build_toolbox(settings)
    agent = ReactAgent(brain, toolbox, ToolEnv(settings), settings.agent)
    cp = new_checkpoint(
        "What is 6 * 7?", ["calculator", "get_datetime"], max_steps=3, max_seconds=60, plan=False
    )
    report = await agent.run(cp)
    assert (report.answer, report.stop_reason) == ("42", "answer")
    first, second = brain.requests
    assert offered_actions(first) == (' "calculator"', ' "get_datetime"', ' "final_answer"')
    # the tool that just answered is not offered again in the next step
    assert offered_actions(second) == (' "get_datetime"', ' "final_answer"')
    assert second.action is not None
    prompt = second.action.prompt
    assert prompt.endswith(
        'Task: What is 6 * 7?\nAction: {"thought": "t", "action": "calculator", "action_input": '
        '{"expression": "6 * 7"}}\nObservation: {"expression":"6 * 7","result":42}\nAction:'
    )
    assert "- calculator: Evaluate arithmetic" in prompt and "system_info" not in prompt


def test_argument_schema_keeps_required_arguments_and_optional_strings(tmp_path: Path) -> None:
    toolbox = build_toolbox(load_settings(data_dir=tmp_path, allowed_roots=[tmp_path]))
    assert argument_schema(toolbox["calculator"]) == {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200}},
        "required": ["expression"],
    }
    assert list(argument_schema(toolbox["get_datetime"])["properties"]) == ["timezone"]
    assert list(argument_schema(toolbox["read_file"])["properties"]) == ["path"]
    assert argument_schema(toolbox["system_info"])["properties"] == {}


def test_observations_are_compacted_for_the_small_model() -> None:
    hits = {"query": "q", "hits": [{"chunk_id": 1, "text": "A", "score": 0.5}, {"item": {"content": "B"}}]}
    assert compact_observation(json.dumps(hits)) == '{"hits": ["A", "B"]}'
    assert compact_observation('{"path": "/x", "text": "hi", "size": 2}') == '{"text":"hi"}'
    assert compact_observation("error: nope") == "error: nope"


def test_examples_nearest_the_task_come_last() -> None:
    names = {"calculator", "get_datetime", "read_file"}
    shown = pick_examples("what is 17*23 plus the current year?", names)
    assert len(shown) == 3 and shown[-1].startswith("Task: What is 6*7 plus the current year?")
    assert pick_examples("What does notes.txt say?", names)[-1].startswith("Task: What does the file")


def test_action_grammar_ends_with_the_chosen_tools_arguments() -> None:
    grammar = action_grammar({"calculator": {"type": "object", "properties": {}, "required": []}})
    assert next(grammar) == Literal('{"thought": "')
    grammar.send("")
    grammar.send('x"')
    assert grammar.send("") == Choice((' "calculator"', ' "final_answer"'))
    assert grammar.send(' "calculator"') == Literal(', "action_input":')
    assert grammar.send("") == Literal(" {")
