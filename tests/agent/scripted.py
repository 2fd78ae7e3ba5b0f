"""``ScriptedBrain``: a deterministic test double for the agent's brain (tests only)."""

from __future__ import annotations

import json
from typing import Any

import anyio

from mcp_gemma.agent.brain import BrainRequest


def call(tool: str, thought: str = "use a tool", **args: Any) -> str:
    return json.dumps({"thought": thought, "tool": tool, "args": args})


def answer(text: str, thought: str = "done") -> str:
    return json.dumps({"thought": thought, "answer": text})


class ScriptedBrain:
    """Replies with the next scripted text and records every request it was given."""

    def __init__(self, replies: list[str], *, delay: float = 0.0, block_at: int | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[str, BrainRequest]] = []
        self.delay = delay
        self.block_at = block_at
        self.blocked = anyio.Event()

    @property
    def name(self) -> str:
        return "scripted"

    async def complete(self, request: BrainRequest, *, key: str) -> str:
        self.requests.append((key, request))
        if self.block_at is not None and len(self.requests) == self.block_at:
            self.blocked.set()
            await anyio.sleep_forever()
        if self.delay:
            await anyio.sleep(self.delay)
        return self.replies.pop(0) if self.replies else answer("out of script")
