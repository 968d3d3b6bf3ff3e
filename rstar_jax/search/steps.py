"""Step texts: prompts, the answer-step rule, the reference's sample filter, observations and seeds.

Everything here is plain host-side Python shared by the MCTS driver and the test-time baselines.

Prompt (rstar_reference.md Part A): `"<|user|>:\\n{Q}\\n<|assistant|>: Let's think step by step and solve the
problem with code."` followed by the path's node texts concatenated without separator (one `\\n` before
`<|assistant|>`, as in training).

Answer-step rule (ours; the reference's "`boxed` anywhere" is a bug, Part B §2.5 and §13 item 8): a step is an
answer step when its text ends with `<end_of_answer>`, or when `\\boxed` occurs in its text OUTSIDE code. Code is
what lies between `<code>` and `<end_of_code>`; a step that starts inside an open code block (the path opened
`<code>` and has not closed it) is code from its start until an `<end_of_code>`. So a comment
`# the result goes in \\boxed{}` inside a code step never makes it an answer.

Sample filter (reference `llm_generate`, Part B §2.4): exact-text dedup (first occurrence wins, texts compared
without their stop string), then, when `first_answer_only`, if any kept sample is an answer step, only the FIRST
answer sample is kept.

Seeds: a problem's seed is a stable hash of (run seed, problem id); the seed of one policy call for one prompt is a
stable hash of (problem seed, rollout, depth of the expanded node), so samples never depend on batch composition.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from rstar_jax.interfaces import Step

__all__ = [
    "ANSWER_END",
    "CODE_END",
    "CODE_START",
    "OUTPUT_END",
    "OUTPUT_START",
    "STEP_END",
    "Sample",
    "build_prompt",
    "code_state_after",
    "derive_seed",
    "filter_samples",
    "is_answer_step",
    "with_observation",
]

CODE_START = "<code>"
STEP_END = "<end_of_step>"
CODE_END = "<end_of_code>"
OUTPUT_START = "<output>"
OUTPUT_END = "<end_of_output>"
ANSWER_END = "<end_of_answer>"
BOXED = "\\boxed"

PROMPT_TEMPLATE = "<|user|>:\n{question}\n<|assistant|>: Let's think step by step and solve the problem with code."


def build_prompt(question: str, node_texts: Sequence[str]) -> str:
    """The policy prompt (and PPM input) for a path: template with the question, then the node texts."""
    return PROMPT_TEMPLATE.format(question=question) + "".join(node_texts)


def _prose(text: str, in_code: bool) -> str:
    """The parts of `text` outside code, given whether a code block is open where `text` starts."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        tag = CODE_END if in_code else CODE_START
        hit = text.find(tag, pos)
        end = len(text) if hit < 0 else hit
        if not in_code:
            out.append(text[pos:end])
        pos = end + len(tag) if hit >= 0 else len(text)
        in_code = not in_code if hit >= 0 else in_code
    return "".join(out)


def code_state_after(text: str, in_code: bool) -> bool:
    """Whether a code block is open after `text`, given whether one was open before it."""
    last_open, last_close = text.rfind(CODE_START), text.rfind(CODE_END)
    if last_open < 0 and last_close < 0:
        return in_code
    return last_open > last_close


def is_answer_step(text: str, in_code: bool) -> bool:
    """Whether a step is a final-answer step (module docstring rule).

    Args:
      text: the step as generated (stop string included).
      in_code: whether the path before this step left a `<code>` block open.
    """
    return text.endswith(ANSWER_END) or BOXED in _prose(text, in_code)


@dataclasses.dataclass(frozen=True)
class Sample:
    """A policy step kept by the filter, with its index among the n samples and its answer flag."""

    index: int
    step: Step
    is_answer: bool


def filter_samples(steps: Sequence[Step], in_code: bool, first_answer_only: bool) -> list[Sample]:
    """The reference's post-filter of one prompt's samples: dedup, then the first-answer-only rule.

    Args:
      steps: the n samples of one prompt, in order.
      in_code: whether the prompt's path leaves a code block open (for the answer rule).
      first_answer_only: keep only the first answer sample when there is one (reference default).

    Returns:
      Kept samples in their original order.
    """
    seen: set[str] = set()
    kept: list[Sample] = []
    for i, step in enumerate(steps):
        key = step.text[: len(step.text) - len(step.stop)] if step.stop else step.text
        if key in seen:
            continue
        seen.add(key)
        kept.append(Sample(i, step, is_answer_step(step.text, in_code)))
    if first_answer_only:
        answers = [s for s in kept if s.is_answer]
        if answers:
            return answers[:1]
    return kept


def with_observation(step_text: str, observation: str) -> str:
    """The node text of a code step that showed its output: step, then `\\n<output>{obs}<end_of_output>`.

    A step that does not end with `<end_of_code>` gets it first (an error terminal closes its block). The
    observation is wrapped exactly once (the reference wraps error outputs twice: a bug we do not copy).
    """
    closed = step_text if step_text.endswith(CODE_END) else step_text + CODE_END
    return f"{closed}\n{OUTPUT_START}{observation}{OUTPUT_END}"


def derive_seed(*parts: int | str) -> int:
    """A stable 31-bit seed from a tuple of ints / strings (blake2b; independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(repr(tuple(parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF
