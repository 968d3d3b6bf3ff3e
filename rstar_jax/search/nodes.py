"""Host-side node payloads and the creation of children from policy samples (rstar_reference.md Part B §2.5-2.8).

For every expanded node the driver calls `make_children` once per tree, with the samples already filtered
(`steps.filter_samples`) and one `ExecResult` per non-answer sample. The rules, in order:

- answer step: terminal `ANSWER`; `final_answer` = the grader's extraction (None when the step has no box);
- non-answer step: its program was executed: `build_program` of the code history (the reference's walk, Part B
  §2.6: every step since the last node whose text closed a code block or showed an output, `<end_of_code>` or
  `<end_of_output>`, whether or not it holds a `<code>` tag) plus this step. So `x0 = 1` then `x1 = x0 + 1`, both
  written without tags, run as `x0 = 1 ... x1 = x0 + 1`. (The reference also skips history steps whose text after
  the step shows "TimeoutError"; such a text is never kept here: a shown output closes the chain.)
  A step ending with `<end_of_code>` shows the observation: `"\\n<output>" + obs + "<end_of_output>"` is
  appended to its text. On an error the consecutive-error counter is the parent's plus one, else 0; reaching
  `errors_threshold` makes the node a `CODE_ERRORS` terminal whose text closes the block and shows the error
  line (once). A non-terminal child deeper than `max_depth` becomes a `TOO_DEEP` terminal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rstar_jax.execution import ExecResult
from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.search.steps import CODE_END, OUTPUT_END, Sample, code_state_after, with_observation
from rstar_jax.search.tree import TerminalKind

__all__ = ["TOO_MANY_CODE_ERRORS", "TOO_MANY_STEPS", "HostNode", "make_children", "program_steps"]

TOO_MANY_CODE_ERRORS = "Too many consecutive steps have code errors."
TOO_MANY_STEPS = "Fail to sove the problem within limited steps."  # sic: the reference's label
PYTHON_ACTION = "python_interpreter"


@dataclasses.dataclass
class HostNode:
    """The host side of one tree node: what cannot live on the device (its numbers and its place in the tree
    are in `Tree`, at the same node id).

    Attributes:
      step: the step text as generated (stop string included); "" for the root.
      text: the node text: the step plus the `<output>` block when one is shown.
      kind: `TerminalKind` given at creation (EXHAUSTED pruning is read from the tree).
      action: "python_interpreter" for code steps, "" for the root and answer steps.
      final_answer: the extracted answer, a failure label, or "".
      answer: the extracted answer of an answer step (None otherwise or when it has none).
      observation: executor observation of a code step (None for answers / root).
      errors: consecutive code errors ending at this node.
      in_code: whether a code block is open after this node.
      history: the step texts a child's program starts with: every step since the last node that closed a code
        block or showed an output, this node's included; () when this node's own text does (module docstring).
      finish: the sample's finish reason; num_tokens: its generated tokens.
    """

    step: str = ""
    text: str = ""
    kind: TerminalKind = TerminalKind.NONE
    action: str = ""
    final_answer: str = ""
    answer: str | None = None
    observation: str | None = None
    errors: int = 0
    in_code: bool = False
    history: tuple[str, ...] = ()
    finish: str = ""
    num_tokens: int = 0


def program_steps(parent: HostNode, step_text: str) -> list[str]:
    """The step texts whose code a new non-answer step runs: the parent's code history plus the step."""
    return [*parent.history, step_text]


def _closes_history(text: str) -> bool:
    """Whether a node's text ends the code history of its descendants (it closed a block or showed an output)."""
    return CODE_END in text or OUTPUT_END in text


def _out_of_context(step: Step) -> bool:
    """An empty LENGTH step: the policy had no room left in its context for this prompt (`FlaxPolicy.generate`)."""
    return step.finish is FinishReason.LENGTH and not step.text


def make_children(
    parent: HostNode,
    samples: Sequence[Sample],
    results: Sequence[ExecResult],
    answers: Sequence[str | None],
    *,
    depth: int,
    errors_threshold: int,
    max_depth: int,
) -> list[HostNode]:
    """The children of `parent` for its filtered samples, in order.

    Args:
      parent: the expanded node.
      samples: filtered samples.
      results: one execution result per NON-answer sample, in sample order.
      answers: one extracted answer per ANSWER sample, in sample order.
      depth: the children's depth (the parent's plus one).
      errors_threshold: consecutive errors that make a node terminal.
      max_depth: deepest allowed non-terminal depth.
    """
    if sum(not s.is_answer for s in samples) != len(results) or sum(s.is_answer for s in samples) != len(answers):
        raise ValueError("rstar_jax/search/nodes.py: make_children got mismatched results/answers for its samples")
    result_iter, answer_iter = iter(results), iter(answers)
    children = []
    for sample in samples:
        step = sample.step.text
        node = HostNode(step=step, text=step, finish=str(sample.step.finish), num_tokens=sample.step.num_tokens)
        if sample.is_answer:
            node.answer = next(answer_iter)
            node.kind = TerminalKind.ANSWER
            node.final_answer = node.answer if node.answer is not None else ""
            children.append(node)
            continue
        result = next(result_iter)
        node.action = PYTHON_ACTION
        node.observation = result.observation
        node.errors = 0 if result.ok else parent.errors + 1
        if not result.ok and node.errors >= errors_threshold:
            node.kind = TerminalKind.CODE_ERRORS
            node.final_answer = TOO_MANY_CODE_ERRORS
            node.text = with_observation(step, result.observation)
        else:
            if step.endswith(CODE_END):
                node.text = with_observation(step, result.observation)
            node.in_code = code_state_after(step, parent.in_code)
            node.history = () if _closes_history(node.text) else tuple(program_steps(parent, step))
            if depth > max_depth or _out_of_context(sample.step):
                node.kind = TerminalKind.TOO_DEEP
                node.final_answer = TOO_MANY_STEPS
        children.append(node)
    return children
