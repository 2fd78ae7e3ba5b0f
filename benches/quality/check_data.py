"""Self-check of the quality benchmark data: ``python -m benches.quality.check_data`` from the repo root.

Loads every corpus and the dialogues (which validates all labels), checks that the generated
queries are the same on a second build, and prints the counts. For the long tuning corpora it checks the
hand-written ``keyword_hand`` files (:func:`hand_keyword_long_corpora`).
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from benches.quality.corpora import (
    HAND_KEYWORD_STYLE,
    LONG_CORPUS_NAMES,
    STYLES,
    Corpus,
    hand_keyword_path,
    hand_keyword_problems,
    hand_keyword_targets,
    load_corpora,
)
from benches.quality.dialogues import KINDS, load_dialogues


def hand_keyword_long_corpora() -> list[str]:
    """The long corpora's ``keyword_hand`` files: every entry well formed with known doc ids, 2-4 terms, no
    duplicate, and one query per document of :func:`hand_keyword_targets` (its first doc id) and no other."""
    problems: list[str] = []
    for corpus in load_corpora(list(LONG_CORPUS_NAMES)):
        path = hand_keyword_path(corpus.name)
        entries = json.loads(path.read_text(encoding="utf-8"))
        ids = {d.id for d in corpus.docs}
        problems += [f"{path.name}: {p}" for p in hand_keyword_problems(entries, ids)]
        hand = [q for q in corpus.queries if q.style == HAND_KEYWORD_STYLE]
        targets = hand_keyword_targets(sorted(ids))
        firsts = [q.relevant[0] for q in hand]
        if sorted(firsts) != sorted(targets):
            problems.append(f"{path.name}: the queries' first documents are not hand_keyword_targets")
        print(
            f"{corpus.name}: {len(hand)} {HAND_KEYWORD_STYLE} queries for {len(targets)} target documents, "
            f"{sum(len(q.relevant) > 1 for q in hand)} with several relevant documents"
        )
    return problems


# The corpora whose hand-written entries are one per document of :func:`hand_keyword_targets` (the rest
# have one per document, or were written before that rule).
TARGETED_CORPORA: tuple[str, ...] = ("idle_news", "idle_history", "os_calls", "tk_calls")


def targeted_entries(corpora: list[Corpus]) -> list[str]:
    """The hand-written entries of :data:`TARGETED_CORPORA` are one for each document
    :func:`hand_keyword_targets` picks (its first doc id), in that order, fixed before the queries were
    written."""
    problems: list[str] = []
    for corpus in corpora:
        if corpus.name not in TARGETED_CORPORA:
            continue
        targets = hand_keyword_targets(sorted(d.id for d in corpus.docs))
        for style in ("keyword", "paraphrase"):
            firsts = [q.relevant[0] for q in corpus.queries if q.style == style]
            if firsts != targets:
                problems.append(
                    f"{corpus.name}: the {style} queries' first documents are not hand_keyword_targets"
                )
    return problems


def main() -> int:
    problems: list[str] = []
    corpora = load_corpora()
    again = load_corpora()
    print(f"{'corpus':<12} {'held_out':<8} {'docs':>5} {'chars':>8} " + " ".join(f"{s:>12}" for s in STYLES))
    for corpus, twin in zip(corpora, again, strict=True):
        if corpus.queries != twin.queries or corpus.docs != twin.docs:
            problems.append(f"{corpus.name}: a second build differs")
        counts = Counter(q.style for q in corpus.queries)
        chars = sum(len(d.text) for d in corpus.docs)
        print(
            f"{corpus.name:<12} {corpus.held_out!s:<8} {len(corpus.docs):>5} {chars:>8} "
            + " ".join(f"{counts[s]:>12}" for s in STYLES)
        )
        for style in ("keyword", "paraphrase"):
            if counts[style] < min(40, len(corpus.docs)):  # one per document in a small corpus
                problems.append(f"{corpus.name}: only {counts[style]} {style} queries")
        texts = Counter(
            (q.style, q.text.lower()) for q in corpus.queries if q.style in ("keyword", "paraphrase")
        )
        problems += [
            f"{corpus.name}: duplicate {style} query {text!r}" for (style, text), n in texts.items() if n > 1
        ]
        if counts["verbatim"] == 0:
            problems.append(f"{corpus.name}: no generated queries")
    if not any(c.held_out for c in corpora) or all(c.held_out for c in corpora):
        problems.append("some corpora must be held out, and some not")
    capped = load_corpora(per_style=5)
    for corpus in capped:
        over = [s for s, n in Counter(q.style for q in corpus.queries).items() if n > 5]
        if over:
            problems.append(f"{corpus.name}: per_style=5 left more for {over}")

    print()
    problems += hand_keyword_long_corpora()
    problems += targeted_entries(corpora)

    turns, questions = load_dialogues()
    by_dialogue = Counter(t.dialogue for t in turns)
    q_by_dialogue = Counter(q.dialogue for q in questions)
    print()
    for did in sorted(by_dialogue):
        dialogue_turns = [t for t in turns if t.dialogue == did]
        sessions = len({t.at.date() for t in dialogue_turns})
        speakers = sorted({t.speaker for t in dialogue_turns})
        print(
            f"dialogue {did}: {by_dialogue[did]} turns, {sessions} sessions, "
            f"{dialogue_turns[0].at.date()} .. {dialogue_turns[-1].at.date()}, "
            f"speakers {', '.join(speakers)}, {q_by_dialogue[did]} questions"
        )
        if by_dialogue[did] < 120:
            problems.append(f"dialogue {did}: only {by_dialogue[did]} turns")
        if q_by_dialogue[did] < 45:
            problems.append(f"dialogue {did}: only {q_by_dialogue[did]} questions")
    kinds = Counter(q.kind for q in questions)
    print(f"questions: {len(questions)} total; " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    text_counts = Counter(t.text for t in turns)
    problems += [f"duplicated turn text {text!r}" for text, n in text_counts.items() if n > 1]
    if kinds["temporal"] < 30:
        problems.append(f"only {kinds['temporal']} temporal questions")
    if len(questions) < 150:
        problems.append(f"only {len(questions)} questions")
    _, capped_q = load_dialogues(per_dialogue=3)
    if len(capped_q) != 3 * len(by_dialogue):
        problems.append("per_dialogue=3 did not cap the questions")

    if problems:
        print("\nPROBLEMS:", *problems, sep="\n  ")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
