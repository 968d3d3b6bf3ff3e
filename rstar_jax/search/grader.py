"""How the search extracts and checks answers: a small protocol, and the project grader behind it.

The search only needs two operations, so tests can pass a trivial fake and the driver never imports the
(heavy, sympy-based) grading package until an answer is actually checked.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from rstar_jax.data import Answer

__all__ = ["Grader", "ProjectGrader", "is_correct"]


@runtime_checkable
class Grader(Protocol):
    """Answer extraction and equivalence, as used by the search and the votes."""

    def extract(self, text: str) -> str | None:
        """The final answer written in an answer step, or None when it has none."""
        ...

    def match(self, pred: str, ref: str) -> bool:
        """Whether two answers are equivalent."""
        ...


@dataclasses.dataclass(frozen=True)
class ProjectGrader:
    """`rstar_jax.grading`: last `\\boxed{}` extraction and math equivalence with a hard timeout."""

    timeout_s: float = 5.0
    percent_as_fraction: bool = True

    def extract(self, text: str) -> str | None:
        from rstar_jax.grading import extract_answer  # local import: sympy is slow to load

        return extract_answer(text)

    def match(self, pred: str, ref: str) -> bool:
        from rstar_jax.grading import answers_match

        return answers_match(pred, ref, timeout_s=self.timeout_s, percent_as_fraction=self.percent_as_fraction)


def is_correct(grader: Grader, pred: str | None, answer: Answer) -> bool:
    """Whether `pred` matches the ground truth (any item of a list answer); None is never correct."""
    if pred is None:
        return False
    refs = (answer,) if isinstance(answer, str) else answer
    return any(grader.match(pred, ref) for ref in refs)
