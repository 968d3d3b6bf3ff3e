"""Deterministic stand-ins for the models and tools of the search, for tests and benchmarks.

- `RandomStepPolicy`: random rStar-format steps (code, code end, code error, answer, box in a code comment,
  EOS prose) from a small vocabulary, so duplicates, answers and errors all occur; a prompt's samples depend only
  on (prompt, seed, n).
- `ScriptedToyPolicy`: the toy domain's teacher (`rstar_jax.toy.ToyTeacher`) with one kind of mistake, a wrong
  operand at a seeded rate per step (so trees hold correct and wrong answers), recording the prompts it is asked.
- `HashPPM`: a value in [-1, 1] from a hash of the text, on a grid of `1 / levels` (exact in float32 sums).
- `FakeExecutor`: runs nothing; a program containing `1/0` fails, any other prints a number derived from it.
- `BoxGrader`: last `\\boxed{...}` (no nesting) and exact string match after stripping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from rstar_jax.data import Problem
from rstar_jax.execution import ExecResult, ExecStatus
from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.search.steps import ANSWER_END, CODE_END, CODE_START, STEP_END, derive_seed
from rstar_jax.toy.teacher import ToyTeacher

__all__ = ["BoxGrader", "FakeExecutor", "HashPPM", "RandomStepPolicy", "ScriptedToyPolicy", "stop_step"]


def stop_step(text: str, stop: str | None) -> Step:
    """A `Step` ending with `stop` (appended), or an EOS step when `stop` is None."""
    if stop is None:
        return Step(text, FinishReason.EOS, None, max(len(text) // 4, 1))
    return Step(text + stop, FinishReason.STOP, stop, max(len(text) // 4, 1))


def _open_block(prompt: str) -> bool:
    return prompt.rfind(CODE_START) > prompt.rfind(CODE_END)


@dataclasses.dataclass(frozen=True)
class RandomStepPolicy:
    """Random steps; `weights` are the odds of (code, code end, error, answer, boxed comment, EOS prose)."""

    vocab: int = 3
    weights: tuple[float, ...] = (4.0, 2.0, 1.0, 2.0, 0.5, 0.5)
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def _step(self, rng: np.random.Generator, in_code: bool) -> Step:
        head = "\n\n" if in_code else f"{CODE_START}\n"
        r = int(rng.integers(self.vocab))
        kind = int(rng.choice(len(self.weights), p=np.asarray(self.weights) / sum(self.weights)))
        if kind == 0:
            return stop_step(f"{head}x{r} = {r}\n", STEP_END)
        if kind == 1:
            return stop_step(f"{head}print({r})\n", CODE_END)
        if kind == 2:
            return stop_step(f"{head}y = {r}/0\n", STEP_END)
        if kind == 3:
            return stop_step(f"\n<answer>The answer is \\boxed{{{r}}}.", ANSWER_END)
        if kind == 4:
            return stop_step(f"{head}# not an answer: \\boxed{{{r}}}\nz = {r}\n", STEP_END)
        return stop_step(f"\nthinking {r}", None)

    def generate(
        self, prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, seed: Sequence[int]
    ) -> list[list[Step]]:
        del stop, max_tokens
        self.calls.append(list(prompts))
        out = []
        for prompt, s in zip(prompts, seed, strict=True):
            rng = np.random.default_rng(derive_seed("random-policy", prompt, s))
            out.append([self._step(rng, _open_block(prompt)) for _ in range(n)])
        return out


class ScriptedToyPolicy(ToyTeacher):
    """`toy.ToyTeacher` whose one mistake is a wrong operand, at rate `mistake_rate` per code step, and which keeps
    every batch of prompts it is asked in `calls`."""

    def __init__(self, problems: Sequence[Problem], mistake_rate: float):
        super().__init__(problems, wrong_operand=mistake_rate, wrong_operation=0.0, code_error=0.0)
        self.calls: list[list[str]] = []

    def generate(
        self, prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, seed: Sequence[int]
    ) -> list[list[Step]]:
        self.calls.append(list(prompts))
        return super().generate(prompts, n, stop, max_tokens, seed)


@dataclasses.dataclass(frozen=True)
class HashPPM:
    """Scores texts by hash: `(h mod (2 * levels + 1) - levels) / levels` in [-1, 1]."""

    levels: int = 32
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        values = [(derive_seed("ppm", t) % (2 * self.levels + 1) - self.levels) / self.levels for t in texts]
        return np.asarray(values, dtype=np.float32)


@dataclasses.dataclass
class FakeExecutor:
    """`run_batch` without running anything; records every batch it was given."""

    batches: list = dataclasses.field(default_factory=list)

    def run_batch(self, programs: Sequence[str]) -> list[ExecResult]:
        self.batches.append(list(programs))
        results = []
        for program in programs:
            if "/0" in program:
                results.append(ExecResult(False, "", "ZeroDivisionError: division by zero", 0.0, ExecStatus.EXCEPTION))
            else:
                results.append(ExecResult(True, f"{derive_seed('exec', program) % 10}\n", None, 0.0))
        return results


_BOX = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclasses.dataclass(frozen=True)
class BoxGrader:
    """Last `\\boxed{...}` without nesting; answers match when equal after stripping."""

    def extract(self, text: str) -> str | None:
        found = _BOX.findall(text)
        return found[-1].strip() if found else None

    def match(self, pred: str, ref: str) -> bool:
        return pred.strip() == ref.strip()
