"""chunk_text returns str offsets that tile the text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gemma import _rust_core as rc


def _check(text: str, chunks: list[tuple[int, int]], max_chars: int, overlap: int) -> None:
    if not text:
        assert chunks == []
        return
    assert chunks[0][0] == 0
    assert chunks[-1][1] == len(text)
    rebuilt = ""
    covered = 0
    for s, e in chunks:
        assert 0 < e - s <= max_chars
        assert s <= covered
        assert covered - s <= overlap
        rebuilt += text[max(covered, s) : e]
        covered = max(covered, e)
    assert rebuilt == text


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from([*"ab .!?\n", "é", "東", "👩‍👩‍👧", "🎉", "\u0301"]), max_size=200).map(
        "".join
    )
    | st.text(max_size=200),
    max_chars=st.integers(1, 50),
    overlap_frac=st.floats(0, 0.9),
    mode=st.sampled_from(["sentence", "chars"]),
)
def test_chunks_tile_any_text(text: str, max_chars: int, overlap_frac: float, mode: str) -> None:
    overlap = min(int(max_chars * overlap_frac), max_chars - 1)
    chunks = rc.chunk_text(text, max_chars, overlap, mode)  # type: ignore[arg-type]
    _check(text, chunks, max_chars, overlap)


def test_sentence_mode_cuts_at_sentence_ends() -> None:
    text = "Redis keeps the data. Rust keeps the index. Python speaks MCP."
    chunks = rc.chunk_text(text, 45)
    assert text[chunks[0][0] : chunks[0][1]].rstrip().endswith(".")
    _check(text, chunks, 45, 0)


def test_cjk_without_spaces_and_emoji() -> None:
    text = "東京都は日本の首都です。" * 20 + "🎉" * 30
    for mode in ("sentence", "chars"):
        chunks = rc.chunk_text(text, 16, 4, mode)
        _check(text, chunks, 16, 4)


def test_chars_mode_fixed_windows() -> None:
    assert rc.chunk_text("abcdefghij", 4, 1, "chars") == [(0, 4), (3, 7), (6, 10)]


@pytest.mark.parametrize(
    ("max_chars", "overlap", "mode", "message"),
    [
        (0, 0, "chars", "max_chars"),
        (5, 5, "sentence", "overlap"),
        (5, -1, "chars", "overlap"),
        (5, 0, "x", "mode"),
    ],
)
def test_bad_sizes(max_chars: int, overlap: int, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rc.chunk_text("some text", max_chars, overlap, mode)  # type: ignore[arg-type]
