"""Time ranges named in a recall query ("in March", "the first week of April", "on 14 May 2026",
"before June", "last week"), so recall can favour memories that happened then.

Only explicit expressions are read; a month without a year is its latest occurrence that has begun
by ``now``. Ranges are half-open ``[start, end)`` in epoch seconds, UTC. "may" counts as the month
only when capitalised or next to a day, a year or a word like "in" / "of" / "early".
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name != "May"})
MONTHS["sept"] = 9
_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"(?:,?\s+(?P<year>(?:19|20)\d\d))?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_ORDINAL = {
    "first": 0,
    "1st": 0,
    "second": 1,
    "2nd": 1,
    "third": 2,
    "3rd": 2,
    "fourth": 3,
    "4th": 3,
    "last": -1,
}
_PART = {"early": (1, 11), "mid": (11, 21), "middle of": (11, 21), "late": (21, 32), "end of": (21, 32)}
_MAY_CONTEXT = re.compile(
    r"\b(?:in|of|since|before|after|until|during|early|mid|late|by)\s+may\b", re.IGNORECASE
)

_ISO = re.compile(r"\b(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)\b")
_DAY_MONTH = re.compile(rf"\b{_DAY}(?:\s+of)?\s+{_MONTH}{_YEAR}\b", re.IGNORECASE)
_MONTH_DAY = re.compile(
    rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:am|pm|:))(?:,?\s+(?P<year>(?:19|20)\d\d))?", re.IGNORECASE
)
_WEEK_OF = re.compile(
    rf"\b(?P<ord>first|1st|second|2nd|third|3rd|fourth|4th|last)\s+week\s+(?:of|in)\s+{_MONTH}{_YEAR}\b",
    re.IGNORECASE,
)
_PART_OF = re.compile(rf"\b(?P<part>early|mid|middle of|late|end of)[\s-]+{_MONTH}{_YEAR}\b", re.IGNORECASE)
_BEFORE_AFTER = re.compile(rf"\b(?P<rel>before|after|since|until)\s+{_MONTH}{_YEAR}\b", re.IGNORECASE)
_MONTH_ONLY = re.compile(rf"\b{_MONTH}{_YEAR}\b", re.IGNORECASE)
_YEAR_ONLY = re.compile(r"\b(?:in|during)\s+(?P<year>(?:19|20)\d\d)\b", re.IGNORECASE)
_RELATIVE = re.compile(
    r"\b(?P<rel>yesterday|today|last week|this week|last month|this month)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class TimeRange:
    """``[start, end)`` in epoch seconds (either may be open), and the words it was read from."""

    start: float | None
    end: float | None
    text: str

    def contains(self, at: float) -> bool:
        """Whether ``at`` falls inside."""
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


def _stamp(year: int, month: int, day: int = 1) -> float:
    return datetime(year, month, day, tzinfo=UTC).timestamp()


def _month_of(word: str, raw: str) -> int | None:
    month = MONTHS.get(word.lower().rstrip("."))
    if month == 5 and word == "may" and not _MAY_CONTEXT.search(raw):
        return None  # the verb, not the month
    return month


def _year_for(month: int, year: str | None, now: datetime) -> int:
    if year:
        return int(year)
    return now.year if month <= now.month else now.year - 1


def _month_bounds(year: int, month: int) -> tuple[float, float]:
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return _stamp(year, month), _stamp(*nxt)


def _day_range(year: int, month: int, day: int, text: str) -> TimeRange | None:
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    start = _stamp(year, month, day)
    return TimeRange(start, start + 86_400, text)


def _with_month(pattern: re.Pattern[str], query: str) -> tuple[re.Match[str], int] | None:
    """The first match of ``pattern`` whose month word really is a month, with that month."""
    for m in pattern.finditer(query):
        month = _month_of(m["month"], m[0])
        if month is not None:
            return m, month
    return None


def _relative(rel: str, when: datetime) -> tuple[float, float | None]:
    day = datetime(when.year, when.month, when.day, tzinfo=UTC)
    monday = day - timedelta(days=day.weekday())
    first = _stamp(when.year, when.month)
    prev = (when.year - 1, 12) if when.month == 1 else (when.year, when.month - 1)
    ranges: dict[str, tuple[float, float | None]] = {
        "today": (day.timestamp(), day.timestamp() + 86_400),
        "yesterday": (day.timestamp() - 86_400, day.timestamp()),
        "this week": (monday.timestamp(), None),
        "last week": ((monday - timedelta(days=7)).timestamp(), monday.timestamp()),
        "this month": (first, None),
        "last month": (_stamp(*prev), first),
    }
    return ranges[rel]


def time_range(query: str, now: float) -> TimeRange | None:
    """The first time range ``query`` names, most specific form first; None when it names none."""
    when = datetime.fromtimestamp(now, tz=UTC)
    if (iso := _ISO.search(query)) and 1 <= int(iso["month"]) <= 12:
        return _day_range(int(iso["year"]), int(iso["month"]), int(iso["day"]), iso[0])
    if found := _with_month(_WEEK_OF, query):
        m, month = found
        start, end = _month_bounds(_year_for(month, m["year"], when), month)
        idx = _ORDINAL[m["ord"].lower()]
        if idx < 0:
            return TimeRange(end - 7 * 86_400, end, m[0])
        return TimeRange(start + 7 * 86_400 * idx, start + 7 * 86_400 * (idx + 1), m[0])
    if found := _with_month(_PART_OF, query):
        m, month = found
        year = _year_for(month, m["year"], when)
        lo, hi = _PART[m["part"].lower()]
        last_day = calendar.monthrange(year, month)[1]
        stop = _month_bounds(year, month)[1] if hi > last_day else _stamp(year, month, hi)
        return TimeRange(_stamp(year, month, lo), stop, m[0])
    for pattern in (_DAY_MONTH, _MONTH_DAY):
        if found := _with_month(pattern, query):
            m, month = found
            return _day_range(_year_for(month, m["year"], when), month, int(m["day"]), m[0])
    if found := _with_month(_BEFORE_AFTER, query):
        m, month = found
        start, end = _month_bounds(_year_for(month, m["year"], when), month)
        rel = m["rel"].lower()
        if rel in ("before", "until"):
            return TimeRange(None, start, m[0])
        return TimeRange(start if rel == "since" else end, None, m[0])
    if found := _with_month(_MONTH_ONLY, query):
        m, month = found
        start, end = _month_bounds(_year_for(month, m["year"], when), month)
        return TimeRange(start, end, m[0])
    if year_match := _YEAR_ONLY.search(query):
        year = int(year_match["year"])
        return TimeRange(_stamp(year, 1), _stamp(year + 1, 1), year_match[0])
    if rel_match := _RELATIVE.search(query):
        begin, until = _relative(rel_match["rel"].lower(), when)
        return TimeRange(begin, until, rel_match[0])
    return None


def epoch_seconds(value: datetime | None) -> float | None:
    """``value`` as epoch seconds (a naive datetime is taken as UTC); ``None`` stays ``None``."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
