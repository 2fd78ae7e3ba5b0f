"""The optional planning step: ask the brain to split the task into a few sub-goals."""

from __future__ import annotations

import json
import re

from mcp_gemma.agent.brain import Brain, BrainRequest, Turn
from mcp_gemma.agent.builtin_tools import AgentTool
from mcp_gemma.agent.parsing import load_object

MAX_GOALS = 6
PLAN_KEY = "plan"

PLAN_PROMPT = """Split the user's task into at most {n} short sub-goals that the tools below can reach.
Tools: {tools}
Reply with one JSON object and nothing else: {{"plan": ["first sub-goal", "second sub-goal"]}}"""

_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.+)$", re.M)


def parse_plan(text: str) -> list[str]:
    """Sub-goals from a JSON object, a JSON list or numbered lines; [] when none can be read."""
    goals: object = None
    start = text.find("{")
    if start >= 0:
        obj, _repairs, _error = load_object(text[start : text.rfind("}") + 1] or text[start:])
        if obj is not None:
            goals = obj.get("plan") or obj.get("steps") or obj.get("subgoals")
    if goals is None and (start := text.find("[")) >= 0:
        try:
            goals = json.loads(text[start : text.rfind("]") + 1])
        except json.JSONDecodeError:
            goals = None
    if not isinstance(goals, list):
        goals = _NUMBERED.findall(text)
    cleaned = [str(g).strip() for g in goals if str(g).strip()]
    return [g[:300] for g in cleaned[:MAX_GOALS]]


async def make_plan(
    brain: Brain, task: str, tools: list[AgentTool], *, max_tokens: int, temperature: float
) -> list[str]:
    """Ask ``brain`` for sub-goals of ``task``."""
    request = BrainRequest(
        system=PLAN_PROMPT.format(n=MAX_GOALS, tools=", ".join(t.name for t in tools)),
        turns=[Turn("user", f"Task: {task}")],
        max_tokens=max_tokens,
        temperature=temperature,
        prefix='{"plan": ["',
    )
    return parse_plan(await brain.complete(request, key=PLAN_KEY))
