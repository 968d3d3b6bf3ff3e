"""The seams between the search and the models: what a policy and a process preference model must offer.

The tree search (and every test-time method) talks to models only through these two protocols, so it runs the
same with the Flax sampling engine, a served model, or the deterministic stubs of the tests.

A `Policy` continues prompts with one reasoning step each: `generate` returns, for every prompt, `n` samples,
each stopped at the first of the stop strings (the step tags of rstar_reference.md Part B §2.4), with the same
contract as the reference's vLLM call: the step text INCLUDES the stop string that ended it; on EOS or the token
limit nothing is appended.

A `ValueModel` (the PPM) scores full texts (prompt + steps so far): one value in [-1, 1] per text.
"""

import dataclasses
import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FinishReason", "Policy", "Step", "ValueModel"]


class FinishReason(enum.StrEnum):
    """Why a sampled step ended."""

    STOP = "stop"  # one of the stop strings was generated (it ends `Step.text`)
    EOS = "eos"  # the model's end-of-sequence token
    LENGTH = "length"  # `max_tokens` reached


@dataclasses.dataclass(frozen=True)
class Step:
    """One sampled continuation of a prompt.

    Attributes:
      text: the generated text, ending with `stop` when `finish` is STOP (nothing after the stop string).
      finish: why generation ended.
      stop: the stop string that ended the step, or None (EOS / length).
      num_tokens: tokens generated for this step (prompt excluded).
    """

    text: str
    finish: FinishReason
    stop: str | None
    num_tokens: int

    def __post_init__(self) -> None:
        if (self.stop is not None) != (self.finish is FinishReason.STOP):
            raise ValueError(f"Step: stop={self.stop!r} is inconsistent with finish={self.finish}")
        if self.stop is not None and not self.text.endswith(self.stop):
            raise ValueError(f"Step: text does not end with its stop string {self.stop!r}")


@runtime_checkable
class Policy(Protocol):
    """Samples reasoning steps."""

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: Sequence[int],
    ) -> list[list[Step]]:
        """Samples `n` steps per prompt.

        Args:
          prompts: B full prompt texts (question template + steps so far).
          n: samples per prompt.
          stop: stop strings; a step ends right after the first one it generates.
          max_tokens: token limit per step.
          seed: B seeds, one per prompt; a prompt's samples depend only on (prompt, its seed, n, the model, the
            sampling settings), never on the other prompts of the batch.

        Returns:
          B lists of n `Step`s, in prompt order.
        """
        ...


@runtime_checkable
class ValueModel(Protocol):
    """Scores partial or full solutions (the PPM)."""

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Values of B texts: float32 `[B]` in [-1, 1]."""
        ...
