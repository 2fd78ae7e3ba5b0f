"""Memory recall quality through a real MCP session: store three long conversations turn by turn with
``store_memory`` (each turn with its ``occurred_at``), ask the labelled questions with
``recall_memory``, and score recall@10 / hit@10 / MRR@10 of the turns that hold each answer.

Dialogue ``d3`` is held out: no default was chosen by looking at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp import Client

from benches.quality.dialogues import Question, Turn
from benches.quality.evaluate import call

HELD_OUT = "d3"
LIMIT = 10

# name -> extra recall_memory arguments
MODES: dict[str, dict[str, Any]] = {
    "vector": {"match": "vector"},
    "bm25": {"match": "keyword"},
    "no_time": {"time_aware": False},
    "default": {},
}


@dataclass
class MemoryScores:
    """Per question kind: (recall@10, hit@10, MRR@10) per question."""

    per_kind: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)

    def add(self, kind: str, value: tuple[float, float, float]) -> None:
        self.per_kind.setdefault(kind, []).append(value)
        self.per_kind.setdefault("all", []).append(value)

    def mean(self, kind: str, which: int = 0) -> float:
        values = self.per_kind[kind]
        return sum(v[which] for v in values) / len(values)

    def table(self) -> dict[str, dict[str, float]]:
        return {
            kind: {
                "recall@10": round(self.mean(kind, 0), 4),
                "hit@10": round(self.mean(kind, 1), 4),
                "mrr@10": round(self.mean(kind, 2), 4),
                "questions": len(values),
            }
            for kind, values in self.per_kind.items()
        }


async def store_dialogues(client: Client, turns: Sequence[Turn]) -> dict[str, str]:
    """Store every turn in its dialogue's agent namespace; memory id -> turn id."""
    ids: dict[str, str] = {}
    for turn in turns:
        report = await call(
            client,
            "store_memory",
            {
                "content": f"{turn.speaker}: {turn.text}",
                "tier": "episodic",
                "agent_id": turn.dialogue,
                "occurred_at": turn.at.isoformat(),
            },
        )
        ids[report["ids"][0]] = turn.id
    return ids


def turn_metrics(found: Sequence[str], wanted: Sequence[str]) -> tuple[float, float, float]:
    top = list(found[:LIMIT])
    recall = len(set(top) & set(wanted)) / len(wanted)
    hit = 1.0 if recall > 0 else 0.0
    rr = next((1.0 / (i + 1) for i, t in enumerate(top) if t in wanted), 0.0)
    return recall, hit, rr


async def evaluate_memory(
    client: Client, questions: Sequence[Question], ids: dict[str, str], modes: Sequence[str]
) -> dict[str, dict[str, MemoryScores]]:
    """{mode: {"tuning" | "held_out": scores}} over ``questions``."""
    out = {mode: {"tuning": MemoryScores(), "held_out": MemoryScores()} for mode in modes}
    for q in questions:
        part = "held_out" if q.dialogue == HELD_OUT else "tuning"
        for mode in modes:
            args = {"query": q.question, "limit": LIMIT, "agent_id": q.dialogue, **MODES[mode]}
            res = await call(client, "recall_memory", args)
            found = [ids.get(hit["item"]["id"], "?") for hit in res["hits"]]
            out[mode][part].add(q.kind, turn_metrics(found, q.answer_turns))
    return out
