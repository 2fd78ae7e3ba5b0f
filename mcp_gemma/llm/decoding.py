"""Backend-neutral pieces of the decoding loop: sampling, stop strings, streamed text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray


def sample_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    """Greedy when ``temperature`` is 0, otherwise temperature + nucleus sampling."""
    import torch

    if temperature <= 0.0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


def sample_token_np(
    logits: NDArray[np.float32], temperature: float, top_p: float, rng: np.random.Generator | None
) -> int:
    """:func:`sample_token` for numpy logits (the int8 decoder), with a numpy generator."""
    import numpy as np

    if temperature <= 0.0 or rng is None:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        keep = np.cumsum(sorted_probs) - sorted_probs < top_p
        kept = sorted_probs * keep
        return int(order[rng.choice(len(kept), p=kept / kept.sum())])
    return int(rng.choice(len(probs), p=probs))


class TextStream:
    """Turns the growing list of generated ids into text pieces, honouring stop strings.

    Each ``push`` re-decodes the whole output (cheap next to a forward pass) so multi-token
    characters and tokenizer spacing come out exactly as a one-shot decode would. Text that
    could be the start of a stop string, or an incomplete UTF-8 sequence, is held back.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str]) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._emitted = 0
        self.text = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became final (possibly empty)."""
        self._ids.append(token_id)
        full = self._decode(self._ids)
        if self._stop:
            start = max(0, self._emitted - max(len(s) for s in self._stop))
            hits = [i for s in self._stop if (i := full.find(s, start)) >= 0]
            if hits:
                self.stopped = True
                self.text = full[: min(hits)]
                return self._flush(len(self.text))
        self.text = full
        safe = len(full)
        if full.endswith("\ufffd"):
            safe -= 1
        safe -= self._partial_stop_suffix(full[:safe])
        return self._flush(max(safe, self._emitted))

    def finish(self) -> str:
        """Release whatever was held back (the generation ended)."""
        return self._flush(len(self.text))

    def _flush(self, upto: int) -> str:
        piece = self.text[self._emitted : upto]
        self._emitted = max(self._emitted, upto)
        return piece

    def _partial_stop_suffix(self, text: str) -> int:
        longest = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
