"""Time ranges read from recall queries (mcp_gemma.memory.timeparse), at a fixed 'now'."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mcp_gemma.memory.timeparse import time_range

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC).timestamp()


def day(value: float | None) -> date | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC).date()


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("what did Sam do in the first week of March?", date(2026, 3, 1), date(2026, 3, 8)),
        ("the last week of February", date(2026, 2, 22), date(2026, 3, 1)),
        ("what was her job before May", None, date(2026, 5, 1)),
        ("anything since April 2025?", date(2025, 4, 1), None),
        ("after June", date(2026, 7, 1), None),
        ("on 14 May 2026", date(2026, 5, 14), date(2026, 5, 15)),
        ("March 3rd", date(2026, 3, 3), date(2026, 3, 4)),
        ("the 2nd of June", date(2026, 6, 2), date(2026, 6, 3)),
        ("notes from 2026-04-02", date(2026, 4, 2), date(2026, 4, 3)),
        ("late April", date(2026, 4, 21), date(2026, 5, 1)),
        ("early Feb", date(2026, 2, 1), date(2026, 2, 11)),
        ("plans for December", date(2025, 12, 1), date(2026, 1, 1)),  # latest December begun by now
        ("what happened in 2025", date(2025, 1, 1), date(2026, 1, 1)),
        ("what did we decide yesterday", date(2026, 11, 29), date(2026, 11, 30)),
        ("last week", date(2026, 11, 23), date(2026, 11, 30)),
        ("last month", date(2026, 10, 1), date(2026, 11, 1)),
    ],
)
def test_named_times_become_ranges(query: str, start: date | None, end: date | None) -> None:
    found = time_range(query, NOW)
    assert found is not None
    assert (day(found.start), day(found.end)) == (start, end)


@pytest.mark.parametrize(
    "query", ["what may I bring", "who is Maya's cat", "the meeting at 5 pm", "February 31", "2026-13-01"]
)
def test_no_range_where_none_is_named(query: str) -> None:
    assert time_range(query, NOW) is None


def test_contains_is_half_open() -> None:
    found = time_range("on 14 May 2026", NOW)
    assert found is not None and found.start is not None and found.end is not None
    assert found.contains(found.start) and not found.contains(found.end)
