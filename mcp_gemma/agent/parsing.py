"""Reading a tool call or a final answer out of what a (small) model wrote.

Accepted: a JSON object, bare or in a fenced block, such as
``{"thought": "...", "tool": "calculator", "args": {"expression": "2+2"}}`` or
``{"thought": "...", "answer": "4"}``; and the classic text form
``Thought: ... / Action: calculator / Action Input: {...}`` or ``Final Answer: ...``.
Common slips are repaired (single quotes, Python literals, trailing commas, unquoted keys, missing
closing braces) and every repair is reported, so the trace shows what was changed.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_PARSE_CHARS = 20_000

TOOL_KEYS = ("tool", "action", "tool_name", "name", "function")
ARGS_KEYS = ("args", "arguments", "action_input", "input", "parameters", "tool_input", "params")
ANSWER_KEYS = ("answer", "final_answer", "final", "result_answer")
THOUGHT_KEYS = ("thought", "thoughts", "reasoning")
REFLECTION_KEYS = ("reflection", "reflect")

_FENCE = re.compile(r"```(?:json|JSON|javascript)?\s*\n?(.*?)```", re.S)
_FINAL = re.compile(r"^\s*\**final\s*answer\**\s*:\s*(.+)", re.I | re.S | re.M)
_THOUGHT = re.compile(
    r"^\s*\**thought\**\s*:\s*(.+?)(?=^\s*\**(action|final\s*answer)\b|\Z)", re.I | re.S | re.M
)
_ACTION = re.compile(r"^\s*\**action\**\s*:\s*`?([A-Za-z_][\w.-]*)`?\s*$", re.I | re.M)
_ACTION_INPUT = re.compile(r"^\s*\**action\s*input\**\s*:\s*(.+)", re.I | re.S | re.M)


@dataclass
class ToolCall:
    """The model asks to run ``tool`` with ``args``."""

    thought: str
    tool: str
    args: dict[str, Any]
    repairs: list[str] = field(default_factory=list)
    reflection: str | None = None


@dataclass
class FinalAnswer:
    """The model is done."""

    thought: str
    answer: str
    repairs: list[str] = field(default_factory=list)
    reflection: str | None = None


@dataclass
class ParseFailure:
    """Nothing usable: ``error`` tells the model what to write instead."""

    thought: str
    error: str


Parsed = ToolCall | FinalAnswer | ParseFailure


def _balanced_object(text: str, start: int) -> tuple[str, bool]:
    """The ``{...}`` starting at ``start`` (string-aware); ``False`` when it never closes."""
    depth, in_str, quote, escaped = 0, False, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_str = False
        elif ch in "\"'":
            in_str, quote = True, ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1], True
    return text[start:], False


def _close_brackets(text: str) -> str:
    """Append the closers a truncated object is missing."""
    stack: list[str] = []
    in_str, quote, escaped = False, "", False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_str = False
        elif ch in "\"'":
            in_str, quote = True, ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    closing = (quote if in_str else "") + "".join(reversed(stack))
    return text.rstrip().rstrip(",") + closing if closing else text


def _python_literal(text: str) -> Any:
    swapped = re.sub(r"\btrue\b", "True", text)
    swapped = re.sub(r"\bfalse\b", "False", swapped)
    swapped = re.sub(r"\bnull\b", "None", swapped)
    return ast.literal_eval(swapped)


def load_object(text: str) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """Parse a JSON-ish object, repairing common slips; return (object, repairs, error)."""
    repairs: list[str] = []
    candidate = text.strip().replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'")
    candidate = candidate.replace("\u2019", "'")
    attempts: list[tuple[str, str]] = [("", candidate)]
    closed = _close_brackets(candidate)
    if closed != candidate:
        attempts.append(("added missing closing brackets", closed))
    error = "not valid JSON"
    for label, body in attempts:
        fixes = [label] if label else []
        for fix_label, fixed in (
            ("", body),
            ("removed trailing commas", re.sub(r",\s*([}\]])", r"\1", body)),
            (
                "quoted bare keys",
                re.sub(r"([{,]\s*)([A-Za-z_]\w*)\s*:", r'\1"\2":', re.sub(r",\s*([}\]])", r"\1", body)),
            ),
        ):
            try:
                value = json.loads(fixed)
            except json.JSONDecodeError as exc:
                error = f"not valid JSON ({exc.msg} at character {exc.pos})"
                continue
            if isinstance(value, dict):
                return value, fixes + ([fix_label] if fix_label else []), None
            return None, [], "the JSON is not an object"
        try:
            value = _python_literal(body)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            repairs = [*fixes, "read as a Python literal (single quotes or True/False/None)"]
            return {str(k): v for k, v in value.items()}, repairs, None
    return None, [], error


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _from_object(obj: dict[str, Any], thought: str, repairs: list[str]) -> Parsed:
    parsed = _read_object(obj, thought, repairs)
    reflection = _first(obj, REFLECTION_KEYS)
    if reflection is not None and not isinstance(parsed, ParseFailure):
        parsed.reflection = str(reflection).strip() or None
    return parsed


def _read_object(obj: dict[str, Any], thought: str, repairs: list[str]) -> Parsed:
    thought = str(_first(obj, THOUGHT_KEYS) or thought).strip()
    answer = _first(obj, ANSWER_KEYS)
    tool = _first(obj, TOOL_KEYS)
    if isinstance(tool, dict):  # {"action": {"name": ..., "args": ...}}
        nested = tool
        tool = _first(nested, TOOL_KEYS)
        obj = {**obj, **{k: v for k, v in nested.items() if k.lower() in ARGS_KEYS}}
    if tool in (None, "", "final_answer", "final", "answer", "finish") and answer is not None:
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return FinalAnswer(thought, text.strip(), repairs)
    if tool in ("final_answer", "finish", "answer"):
        args = _first(obj, ARGS_KEYS)
        if isinstance(args, dict) and isinstance(inner := _first(args, ANSWER_KEYS), str):
            return FinalAnswer(thought, inner.strip(), repairs)  # {"action_input": {"answer": ...}}
        text = args if isinstance(args, str) else json.dumps(args)
        return FinalAnswer(thought, text.strip(), [*repairs, f"read tool {tool!r} as the final answer"])
    if not isinstance(tool, str) or not tool:
        return ParseFailure(thought, 'the JSON names no "tool" and gives no "answer"')
    args = _first(obj, ARGS_KEYS)
    if args is None:
        args = {
            k: v for k, v in obj.items() if k.lower() not in (*TOOL_KEYS, *THOUGHT_KEYS, *REFLECTION_KEYS)
        }
    if isinstance(args, str):
        parsed, more, _ = load_object(args) if args.strip().startswith("{") else (None, [], None)
        if parsed is None:
            return ToolCall(thought, tool.strip(), {"__input__": args}, repairs)
        args, repairs = parsed, [*repairs, *more, "decoded args given as a JSON string"]
    if not isinstance(args, dict):
        return ParseFailure(thought, f'"args" must be a JSON object, not {type(args).__name__}')
    return ToolCall(thought, tool.strip(), args, repairs)


def parse_action(text: str) -> Parsed:
    """Read the model's step: a tool call, a final answer, or a failure saying what was wrong."""
    text = text[:MAX_PARSE_CHARS]
    thought_match = _THOUGHT.search(text)
    thought = thought_match.group(1).strip() if thought_match else ""
    fenced = _FENCE.search(text)
    sources = [fenced.group(1)] if fenced else []
    action_line = _ACTION.search(text)
    final = _FINAL.search(text)
    if action_line is None and (brace := text.find("{")) >= 0 and (final is None or brace < final.start()):
        body, _closed = _balanced_object(text, brace)
        sources.append(body)
    for source in sources:
        obj, repairs, _error = load_object(source)
        if obj is not None:
            if fenced is not None and source is sources[0]:
                repairs = ["read the JSON from a fenced block", *repairs]
                prefix = text[: fenced.start()]
            else:
                prefix = text[: text.find("{")]
            return _from_object(obj, thought or prefix.strip(), repairs)
    if action_line is not None:
        tool = action_line.group(1)
        input_match = _ACTION_INPUT.search(text, action_line.end())
        raw = input_match.group(1).strip() if input_match else "{}"
        if raw.startswith("{"):
            body, _closed = _balanced_object(raw, 0)
            obj, repairs, error = load_object(body)
            if obj is None:
                return ParseFailure(thought, f"the Action Input of {tool!r} is {error}")
            return ToolCall(thought, tool, obj, ["read the text form (Action / Action Input)", *repairs])
        return ToolCall(
            thought, tool, {"__input__": raw.splitlines()[0] if raw else ""}, ["read the text form"]
        )
    if final is not None:
        return FinalAnswer(thought, final.group(1).strip(), ["read the text form (Final Answer:)"])
    if sources:
        _obj, _r, error = load_object(sources[0])
        return ParseFailure(thought, f"the JSON is {error}" if error else "the JSON could not be read")
    return ParseFailure(
        thought or text.strip()[:200],
        'no JSON object found; answer with {"thought": ..., "tool": ..., "args": {...}} '
        'or {"thought": ..., "answer": ...}',
    )
