"""A hand-written conversational memory benchmark: three long two-person chats and questions about them.

``benches/data/dialogues.json`` holds three dialogues (a pair of friends, a user and their home
assistant, two colleagues), each spread over several sessions between January and May 2026, and
questions whose answers sit in named turns. Question kinds: ``single_fact``, ``multi_turn``,
``temporal``, ``preference`` and ``updated_fact`` (the latest value of something that changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "dialogues.json"
KINDS: tuple[str, ...] = ("single_fact", "multi_turn", "temporal", "preference", "updated_fact")


@dataclass(frozen=True)
class Turn:
    id: str
    dialogue: str
    speaker: str
    at: datetime
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    dialogue: str
    question: str
    answer: str
    answer_turns: tuple[str, ...]
    kind: str


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: missing or empty {key!r}")
    return value


def _parse_time(value: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{where}: bad timestamp {value!r}") from exc


def load_dialogues(
    per_dialogue: int | None = None, path: Path = DATA_FILE
) -> tuple[list[Turn], list[Question]]:
    """All turns (in dialogue order) and the questions; per_dialogue caps questions per dialogue
    (the first N in file order)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    turns: list[Turn] = []
    seen: set[str] = set()
    dialogue_ids: list[str] = []
    for d in raw["dialogues"]:
        did = _str(d, "id", "dialogue")
        if did in dialogue_ids:
            raise ValueError(f"duplicate dialogue id {did!r}")
        dialogue_ids.append(did)
        speakers = d.get("speakers", [])
        previous: datetime | None = None
        for t in d["turns"]:
            tid = _str(t, "id", f"dialogue {did}")
            if tid in seen:
                raise ValueError(f"duplicate turn id {tid!r}")
            seen.add(tid)
            speaker = _str(t, "speaker", tid)
            if speakers and speaker not in speakers:
                raise ValueError(f"{tid}: speaker {speaker!r} is not one of {speakers}")
            at = _parse_time(_str(t, "at", tid), tid)
            if previous is not None and at < previous:
                raise ValueError(f"{tid}: timestamp goes backwards")
            previous = at
            turns.append(Turn(id=tid, dialogue=did, speaker=speaker, at=at, text=_str(t, "text", tid)))
    turn_dialogue = {t.id: t.dialogue for t in turns}
    questions: list[Question] = []
    per: dict[str, int] = {}
    qids: set[str] = set()
    for q in raw["questions"]:
        qid = _str(q, "id", "question")
        if qid in qids:
            raise ValueError(f"duplicate question id {qid!r}")
        qids.add(qid)
        did = _str(q, "dialogue", qid)
        if did not in dialogue_ids:
            raise ValueError(f"{qid}: unknown dialogue {did!r}")
        kind = _str(q, "kind", qid)
        if kind not in KINDS:
            raise ValueError(f"{qid}: unknown kind {kind!r}")
        answer_turns = tuple(q.get("answer_turns", ()))
        if not answer_turns:
            raise ValueError(f"{qid}: no answer turns")
        for tid in answer_turns:
            if tid not in turn_dialogue:
                raise ValueError(f"{qid}: unknown answer turn id {tid!r}")
            if turn_dialogue[tid] != did:
                raise ValueError(f"{qid}: answer turn {tid!r} belongs to another dialogue")
        per[did] = per.get(did, 0) + 1
        if per_dialogue is not None and per[did] > per_dialogue:
            continue
        questions.append(
            Question(
                id=qid,
                dialogue=did,
                question=_str(q, "question", qid),
                answer=_str(q, "answer", qid),
                answer_turns=answer_turns,
                kind=kind,
            )
        )
    return turns, questions
