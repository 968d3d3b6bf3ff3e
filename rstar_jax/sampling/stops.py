"""Host-side detokenization and stop-string detection: generated token ids -> `interfaces.Step`.

The contract is the reference's vLLM call (rstar_reference.md Part B §2.4): a sample ends right after the
first stop string that appears anywhere in its generated text, even when the string spans several tokens or
sits inside one token followed by more text; the step text is the text up to and including that stop string
(anything after it is cut). On EOS the EOS token's text is not included; on the token limit nothing is
appended. Stop strings are looked for in the generated text only, never across the prompt boundary.

Text is decoded with a few prompt tokens as left context and the context's text removed, so tokenizers that
drop a leading space at the start of a decode (sentencepiece) still give the text the prompt continues with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rstar_jax.interfaces import FinishReason, Step

CONTEXT_TOKENS = 4


def _first_stop(text: str, stops: Sequence[str], start: int) -> tuple[int, str] | None:
    """(end index right after the stop, the stop) of the earliest stop occurrence at or after `start`."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        pos = text.find(stop, start)
        if pos >= 0 and (best is None or (pos, -len(stop)) < (best[0], -len(best[2]))):
            best = (pos, len(stop), stop)
    return None if best is None else (best[0] + best[1], best[2])


class StopScanner:
    """Follows one generated row: tokens arrive in chunks, `feed` says when the row is finished.

    Args:
      tokenizer: a Hugging Face tokenizer (decoded with `skip_special_tokens=False`, as the reference).
      stops: stop strings; an empty stop string is rejected.
      eos_ids: token ids that end generation.
      max_tokens: token limit of the row.
      context: the last prompt token ids (left context for decoding).
    """

    def __init__(
        self, tokenizer: Any, stops: Sequence[str], eos_ids: Sequence[int], max_tokens: int, context: Sequence[int]
    ):
        if any(not s for s in stops):
            raise ValueError(f"StopScanner: stop strings must be non-empty, got {list(stops)!r}")
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.eos_ids = frozenset(int(e) for e in eos_ids)
        self.max_tokens = max_tokens
        self.context = [int(t) for t in context[-CONTEXT_TOKENS:]]
        self._context_text = self._raw(self.context)
        self.tokens: list[int] = []
        self.text = ""
        self.step: Step | None = None
        self._longest = max((len(s) for s in self.stops), default=0)

    def _raw(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _decode(self, ids: Sequence[int]) -> str:
        """Text of generated `ids`, decoded after the prompt context."""
        full = self._raw(self.context + list(ids))
        if full.startswith(self._context_text):
            return full[len(self._context_text) :]
        return self._raw(ids)

    @property
    def done(self) -> bool:
        return self.step is not None

    def feed(self, chunk: Sequence[int]) -> bool:
        """Append generated token ids; returns True once the row is finished (then `self.step` is set)."""
        if self.step is not None:
            return True
        chunk = list(chunk[: self.max_tokens - len(self.tokens)])
        for i, tok in enumerate(chunk):
            if int(tok) in self.eos_ids:
                self._consume(chunk[:i])
                if self.step is None:
                    self.text = self._decode(self.tokens)
                    self.step = Step(self.text, FinishReason.EOS, None, len(self.tokens) + 1)
                return True
        self._consume(chunk)
        if self.step is None and len(self.tokens) >= self.max_tokens:
            self.text = self._decode(self.tokens)
            self.step = Step(self.text, FinishReason.LENGTH, None, len(self.tokens))
        return self.step is not None

    def _consume(self, chunk: Sequence[int]) -> None:
        """Add non-EOS tokens; on a stop string, find the first token that completes it and cut there."""
        if not len(chunk) or not self.stops:
            self.tokens.extend(int(t) for t in chunk)
            return
        before, old_text = len(self.tokens), self.text
        self.tokens.extend(int(t) for t in chunk)
        self.text = self._decode(self.tokens)
        start = max(0, min(len(old_text), _common_prefix(old_text, self.text)) - self._longest + 1)
        hit = _first_stop(self.text, self.stops, start)
        if hit is None:
            return
        for m in range(before + 1, len(self.tokens) + 1):  # fewest tokens whose text holds a stop
            text = self._decode(self.tokens[:m])
            found = _first_stop(text, self.stops, start)
            if found is not None:
                end, stop = found
                self.tokens, self.text = self.tokens[:m], text[:end]
                self.step = Step(self.text, FinishReason.STOP, stop, m)
                return
        raise AssertionError("stop string vanished when decoding a prefix of the tokens")  # pragma: no cover


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of a and b (decoded text can change at its end, e.g. partial UTF-8)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
