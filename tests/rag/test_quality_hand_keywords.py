"""The long tuning corpora's hand-written ``keyword_hand`` queries (``benches/quality/corpora.py``, sixth
round of issue 12): the file check, the loader and the document-selection rule. Synthetic data and the
shipped files' format only (which documents exist depends on the installed packages; ``check_data``
checks that against the real corpora); fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benches.quality import corpora
from benches.quality.corpora import (
    LONG_CORPUS_NAMES,
    Query,
    hand_keyword_path,
    hand_keyword_problems,
    hand_keyword_queries,
    hand_keyword_targets,
)

IDS = {"readme:a", "readme:b", "readme:c"}


def test_a_well_formed_file_has_no_problem() -> None:
    entries = [
        {"doc": "readme:a", "keyword": "http retries backoff"},
        {"doc": ["readme:b", "readme:c"], "keyword": "config  file"},
    ]
    assert hand_keyword_problems(entries, IDS) == []


def test_every_problem_is_named() -> None:
    entries = [
        {"doc": "readme:zzz", "keyword": "unknown document here"},
        {"doc": "readme:a", "keyword": "one"},
        {"doc": "readme:b", "keyword": "far too many terms in it"},
        {"doc": "readme:c", "keyword": "Unknown  Document here"},
        {"doc": [], "keyword": "no documents"},
        {"doc": ["readme:a", "readme:a"], "keyword": "named twice"},
        {"doc": "bad id!", "keyword": "bad id"},
        {"doc": "readme:a", "keyword": 3},
        {"doc": "readme:a"},
        {"doc": "readme:a", "keyword": "extra key", "paraphrase": "x"},
    ]
    assert hand_keyword_problems(entries, IDS) == [
        "entry 0: unknown doc id 'readme:zzz'",
        "entry 1: 1 terms in 'one' (expected 2-4)",
        "entry 2: 6 terms in 'far too many terms in it' (expected 2-4)",
        "entry 3: duplicate query 'Unknown  Document here' (entry 0)",
        "entry 4: doc must be an id or a non-empty list of ids",
        "entry 5: a doc id is named twice",
        "entry 6: bad doc id 'bad id!'",
        "entry 7: keyword must be a string",
        "entry 8: expected exactly the keys doc and keyword",
        "entry 9: expected exactly the keys doc and keyword",
    ]
    assert hand_keyword_problems({"doc": "readme:a"}, IDS) == ["expected a list of objects"]
    # without the corpus only the format is checked: the unknown id passes, the rest stays
    assert len(hand_keyword_problems(entries, None)) == 9


def test_the_loader_reads_a_good_file_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpora, "DATA_DIR", tmp_path)
    good = [
        {"doc": "readme:a", "keyword": "http  retries backoff"},
        {"doc": ["readme:b", "readme:c"], "keyword": "config file"},
    ]
    (tmp_path / "quality_readmes_keyword_hand.json").write_text(json.dumps(good), encoding="utf-8")
    assert hand_keyword_queries("readmes", IDS) == [
        Query("http retries backoff", ("readme:a",), "keyword_hand"),
        Query("config file", ("readme:b", "readme:c"), "keyword_hand"),
    ]
    with pytest.raises(ValueError, match="unknown doc id 'readme:a'"):
        hand_keyword_queries("readmes", {"readme:b", "readme:c"})


def test_targets_are_evenly_spaced_over_the_sorted_ids() -> None:
    ids = [f"d{i:03d}" for i in range(83)][::-1]  # order given does not matter
    got = hand_keyword_targets(ids)
    assert len(got) == 40
    assert got[:5] == ["d000", "d002", "d004", "d006", "d008"]  # floor(i * 83 / 40)
    assert got[-2:] == ["d078", "d080"]
    assert hand_keyword_targets(["b", "a"]) == ["a", "b"]  # fewer documents than targets: all


@pytest.mark.parametrize("name", LONG_CORPUS_NAMES)
def test_the_shipped_files_are_well_formed(name: str) -> None:
    entries = json.loads(hand_keyword_path(name).read_text(encoding="utf-8"))
    assert hand_keyword_problems(entries, None) == []
    assert len(entries) == 40
