"""The long tuning corpora's keyword queries (``benches/quality/corpora.py``, fifth round) are made by a
fixed rule: the first 2, 3, 4 (in turn) content words of each sampled document's one-line description,
without stop words and without words of the document's title. Synthetic documents; fast."""

from __future__ import annotations

from benches.quality.corpora import Doc, generated_keywords

SUMMARIES = {
    "readme:htmlkit": ("htmlkit", "A fast parser for HTML trees and their nodes"),
    "readme:pipes": ("pipes", "Streaming pipes with pipelines for the network"),
    "readme:solo": ("solo", "The solo tool"),
    "readme:grid": ("grid", "Grid layout engine with flexible columns and rows"),
    "readme:clock": ("clock", "Monotonic timers, alarms and schedules for tasks"),
}
# The rule's words: no stop word (a, for, and, their, with, the), no part of the title ("html" is in
# "htmlkit", "pipes" and "pipe" in "pipes", "grid", "clock"); "solo"'s description has one word left.
WORDS = {
    "readme:htmlkit": ["fast", "parser", "trees", "nodes"],
    "readme:pipes": ["streaming", "pipelines", "network"],
    "readme:solo": ["tool"],
    "readme:grid": ["layout", "engine", "flexible", "columns"],
    "readme:clock": ["monotonic", "timers", "alarms", "schedules"],
}


def _docs() -> list[Doc]:
    return [
        Doc(id=i, text=f"{summary}. More text about {title}.", metadata={"title": title, "summary": summary})
        for i, (title, summary) in SUMMARIES.items()
    ]


def test_summary_keywords_follow_the_rule() -> None:
    queries = generated_keywords("readmes", _docs())
    assert queries == generated_keywords("readmes", _docs())  # seeded: the same every run
    # every document but "solo" (one content word) gives a query; its terms are the first k words
    assert sorted(q.relevant for q in queries) == [(i,) for i in sorted(WORDS) if i != "readme:solo"]
    for q in queries:
        assert q.style == "keyword"
        words = q.text.split()
        assert 2 <= len(words) <= 4
        assert words == WORDS[q.relevant[0]][: len(words)]
    assert sorted(len(q.text.split()) for q in queries) != [4, 4, 4, 4]  # k varies (2, 3, 4 in turn)


def test_body_keywords_need_two_occurrences_and_another_document() -> None:
    docs = [
        Doc(id="d1", text="kernel kernel kernel matrix matrix unique unique", metadata={"title": "d1"}),
        Doc(id="d2", text="kernel matrix matrix solver", metadata={"title": "d2"}),
        Doc(id="d3", text="solver solver kernel", metadata={"title": "d3"}),
    ]
    got = {q.relevant[0]: q.text for q in generated_keywords("readmes", docs, rule="body")}
    # d1: "unique" is only in d1; matrix (2 x idf over 2 of 3 documents, 0.94) ranks before kernel
    # (3 x idf over 3 of 3, 0.40); d2 and d3 have one word twice only: fewer than k, no query
    assert got == {"d1": "matrix kernel"}
