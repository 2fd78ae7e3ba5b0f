"""Constrained decoding: a grammar's requests (:mod:`mcp_gemma.llm.grammar`) as token masks.

:class:`Vocabulary` holds each token's text once per tokenizer (262k for Gemma), with the id sets the
requests need precomputed (string-safe tokens and their lengths, tokens that close a string, number
tokens, a text → ids map for choices), so a step costs one numpy gather and an argmax, never a scan
of the vocabulary in Python.

:class:`ConstrainedDecoder` walks the grammar. Text the grammar dictates is not decoded: it is
tokenized and fed to the model in the same forward pass as the last chosen token ("forced spans"),
as is the rest of a choice once only one option fits. At a free position the model picks among the
tokens that keep the output valid: a string's contents are tokens without quotes, backslashes or
control characters (a token with a quote closes the string, whatever follows the quote is dropped),
a number's tokens keep it a JSON number, and a number or an empty array ends when the model's
preferred token could not continue it. The output is valid by construction; callers still check it
against the schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mcp_gemma.llm.grammar import (
    MAX_NUMBER_CHARS,
    Choice,
    FreeNumber,
    FreeString,
    Grammar,
    Literal,
    Peek,
    Request,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Pick = Callable[["NDArray[np.float32]"], int]
"""Chooses an index into a 1-D array of logits (argmax when greedy)."""

_INT_PREFIX = re.compile(r"-?(0|[1-9]\d*)?")
_INT_FULL = re.compile(r"-?(0|[1-9]\d*)")
_NUM_PREFIX = re.compile(r"-?((0|[1-9]\d*)(\.\d*)?)?")
_NUM_FULL = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_NUMBER_CHARS = frozenset("0123456789.-")


def _shared_prefix(texts: Sequence[str]) -> str:
    """The longest text every one of ``texts`` starts with."""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _looping(text: str) -> bool:
    """Whether ``text`` ends with the same piece three times over (a small model's loop)."""
    for n in range(2, min(40, len(text) // 3) + 1):
        if text[-n:] == text[-2 * n : -n] == text[-3 * n : -2 * n]:
            return True
    return False


def _string_safe(text: str) -> bool:
    return not any(ch in '"\\' or ord(ch) < 0x20 or ch == "\x7f" for ch in text)


class Vocabulary:
    """Every token's text (``None`` for special or partial-UTF-8 tokens) and the id sets derived from it."""

    def __init__(self, pieces: Sequence[str | None]) -> None:
        import numpy as np

        self.pieces: list[str] = [p if p and "\ufffd" not in p else "" for p in pieces]
        self.by_text: dict[str, list[int]] = {}
        safe, safe_len, close, close_len, numbers = [], [], [], [], []
        for i, text in enumerate(self.pieces):
            if not text:
                continue
            self.by_text.setdefault(text, []).append(i)
            quote = text.find('"')
            if quote < 0:
                if _string_safe(text):
                    safe.append(i)
                    safe_len.append(len(text))
            elif _string_safe(text[:quote]):
                close.append(i)
                close_len.append(quote)
            if all(ch in _NUMBER_CHARS for ch in text):
                numbers.append(i)
        self.safe_ids = np.asarray(safe, dtype=np.int64)
        self.safe_len = np.asarray(safe_len, dtype=np.int64)
        self.close_ids = np.asarray(close, dtype=np.int64)
        self.close_len = np.asarray(close_len, dtype=np.int64)
        self.number_ids = numbers

    def __len__(self) -> int:
        return len(self.pieces)


class ConstrainedDecoder:
    """Drives one grammar over token ids: ``take_feed`` says what to run, ``advance`` picks a token."""

    def __init__(self, grammar: Grammar, vocab: Vocabulary, encode: Callable[[str], list[int]]) -> None:
        self._grammar = grammar
        self._vocab = vocab
        self._encode = encode
        self._parts: list[str] = []
        self._feed: list[int | str] = []
        self._request: Request | None = None
        self._acc = ""
        self._started = False
        self.done = False
        self.chosen = 0
        """Tokens the model picked (the rest of the output was forced)."""
        self._next(None)

    @property
    def text(self) -> str:
        """The output so far."""
        return "".join(self._parts)

    def take_feed(self) -> list[int]:
        """Token ids to run through the model before the next choice (chosen ids, then forced text)."""
        ids: list[int] = []
        text = ""
        for item in self._feed:
            if isinstance(item, str):
                text += item
                continue
            if text:
                ids += self._encode(text)
                text = ""
            ids.append(item)
        if text:
            ids += self._encode(text)
        self._feed = []
        return ids

    # ------------------------------------------------------------------------------ grammar walk
    def _emit(self, text: str, token: int | None = None) -> None:
        """Append ``text`` to the output; feed it as ``token`` when one was chosen, else as text."""
        if not text:
            return
        self._parts.append(text)
        self._feed.append(token if token is not None else text)

    def _next(self, sent: str | None) -> None:
        """Finish the current request with ``sent`` and move to the next free one (forcing literals)."""
        try:
            request = self._grammar.send(sent or "") if self._started else next(self._grammar)
            self._started = True
            while True:
                if isinstance(request, Literal):
                    self._emit(request.text)
                    request = self._grammar.send(request.text)
                elif isinstance(request, Choice) and len(request.options) == 1:
                    self._emit(request.options[0])
                    request = self._grammar.send(request.options[0])
                else:
                    break
        except StopIteration:
            self.done = True
            self._request = None
            return
        self._request = request
        self._acc = ""
        if isinstance(request, Choice):
            self._settle_choice(request)

    # ---------------------------------------------------------------------------------- choices
    def advance(self, logits: NDArray[np.float32], pick: Pick) -> None:
        """Pick the next token under the current request's mask (``logits`` over the vocabulary)."""
        request = self._request
        if request is None:
            return
        self.chosen += 1
        if isinstance(request, Choice):
            self._choice(request, logits, pick)
        elif isinstance(request, FreeString):
            self._string(request, logits, pick)
        elif isinstance(request, FreeNumber):
            self._number(request, logits, pick)
        elif isinstance(request, Peek):
            self._peek(request, logits, pick)

    def _choice(self, request: Choice, logits: NDArray[np.float32], pick: Pick) -> None:
        import numpy as np

        live = [o for o in request.options if o.startswith(self._acc)]
        candidates: dict[int, str] = {}
        for option in live:
            rest = option[len(self._acc) :]
            for k in range(1, len(rest) + 1):
                for token in self._vocab.by_text.get(rest[:k], ()):
                    candidates[token] = rest[:k]
        if self._acc in request.options and self._ends(logits, pick, candidates):
            self._next(self._acc)
            return
        if not candidates:  # no token spells the next character: write it
            self._emit(live[0][len(self._acc)])
            self._acc += live[0][len(self._acc)]
        else:
            ids = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
            token = int(ids[pick(logits[ids])])
            self._emit(candidates[token], token)
            self._acc += candidates[token]
        self._settle_choice(request)

    def _settle_choice(self, request: Choice) -> None:
        """Write what every option still in play shares (all of it once only one option fits)."""
        live = [o for o in request.options if o.startswith(self._acc)]
        if len(live) == 1:
            self._emit(live[0][len(self._acc) :])
            self._next(live[0])
            return
        shared = _shared_prefix(live)
        if len(shared) > len(self._acc):
            self._emit(shared[len(self._acc) :])
            self._acc = shared

    def _ends(
        self, logits: NDArray[np.float32], pick: Pick, continuations: dict[int, str] | set[int]
    ) -> bool:
        """Whether the model's preferred token, over the whole vocabulary, could not continue the value."""
        return int(pick(logits)) not in continuations

    def _string(self, request: FreeString, logits: NDArray[np.float32], pick: Pick) -> None:
        import numpy as np

        vocab = self._vocab
        written = len(self._acc)
        room = request.max_chars - written
        if room <= 0:
            self._close_string()
            return
        if request.end_at and self._acc.endswith(request.end_at) and written >= request.min_chars:
            # a sentence ends where the model goes on with a space or a quote, not inside "notes.txt"
            following = vocab.pieces[int(pick(logits))]
            if not following or following[0] in ' "\n':
                self._close_string()
                return
        more = vocab.safe_ids[vocab.safe_len <= room]
        closing = (vocab.close_len <= room) & (vocab.close_len + written >= request.min_chars)
        ends = vocab.close_ids[closing]
        ids = np.concatenate([more, ends])
        token = int(ids[pick(logits[ids])])
        piece = vocab.pieces[token]
        quote = piece.find('"')
        if quote < 0:
            self._emit(piece, token)
            self._acc += piece
            if len(self._acc) >= request.max_chars or _looping(self._acc):
                self._close_string()
            return
        if quote == len(piece) - 1:
            self._emit(piece, token)
        else:  # text after the quote is the grammar's to write, not the model's
            self._emit(piece[: quote + 1])
        self._acc += piece[:quote]
        self._next(self._acc + '"')

    def _close_string(self) -> None:
        self._emit('"')
        self._next(self._acc + '"')

    def _number(self, request: FreeNumber, logits: NDArray[np.float32], pick: Pick) -> None:
        import numpy as np

        prefix, full = (_INT_PREFIX, _INT_FULL) if request.integer else (_NUM_PREFIX, _NUM_FULL)
        candidates = {
            token
            for token in self._vocab.number_ids
            if len(self._acc) + len(self._vocab.pieces[token]) <= MAX_NUMBER_CHARS
            and prefix.fullmatch(self._acc + self._vocab.pieces[token])
        }
        complete = full.fullmatch(self._acc) is not None
        if complete and (not candidates or self._ends(logits, pick, candidates)):
            self._next(self._acc)
            return
        ids = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        token = int(ids[pick(logits[ids])])
        self._emit(self._vocab.pieces[token], token)
        self._acc += self._vocab.pieces[token]

    def _peek(self, request: Peek, logits: NDArray[np.float32], pick: Pick) -> None:
        if self._vocab.pieces[int(pick(logits))].startswith(request.end):
            self._emit(request.end)
            self._next(request.end)
        else:
            self._next("")
