"""Reading pretraining of the toy's tiny base: the part of a math-pretrained base that a from-scratch decoder lacks.

    docs = reading_problems(splits, per_band=2000, seed=0)        # disjoint from the train and test splits
    examples = reading_examples(docs, encode, eos_id, max_length=256)
    base, _ = rstar_jax.train.train(base, sft_loss, examples, cfg=..., workdir=...)

The paper's policy starts from Qwen2.5-Math-7B, a base pretrained on math text: it can read a word problem and
restate its quantities before round 1 teaches it the code-augmented step format. A decoder trained from scratch
cannot: copying a number from the question into a step (the induction pattern) takes millions of tokens to form,
more than the self-evolution rounds' few hundred trajectories give it (README, "What the toy policy learns").

A reading document is a toy question followed by its intended computation restated in words, one sentence per
step ("Nina starts with 14 shells. Nina gets 12 more. Nina has 18 fewer."): the step comments of the canonical
solution, with no code, no intermediate values and no answer. So the pretrained base has learnt to read and copy
quantities, not to solve problems: the rStar format, the arithmetic and the final answers still come only from
round 1's teacher trees. The problems come from their own split ("read"), redrawn when a question is in the
train or test split, so no evaluated question is ever read.

Shapes: N documents, T = max_length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rstar_jax.data import Problem, normalize_question
from rstar_jax.toy.generator import BANDS, generate_problems
from rstar_jax.train.batches import Examples, document_examples

__all__ = ["READ_SPLIT", "reading_document", "reading_examples", "reading_problems"]

READ_SPLIT = "read"


def reading_problems(
    exclude: Sequence[Problem], per_band: int, seed: int, bands: Sequence[str] = BANDS
) -> list[Problem]:
    """`per_band` problems per band of the "read" split, none with a question of `exclude` (the run's splits)."""
    texts = frozenset(normalize_question(p.question) for p in exclude)
    out: list[Problem] = []
    for band in bands:
        out.extend(generate_problems(band, per_band, seed, split=READ_SPLIT, exclude=texts))
    return out


def reading_document(problem: Problem) -> str:
    """The question, a newline, then one sentence per step of the intended computation (module docstring)."""
    steps = problem.extra.get("steps")
    if not steps:
        raise ValueError(f"problem {problem.id!r} has no extra['steps'] (not a toy problem?)")
    return problem.question + "\n" + " ".join(f"{step['comment']}." for step in steps)


def reading_examples(
    problems: Sequence[Problem], encode: Callable[[str], list[int]], eos_id: int, max_length: int
) -> Examples:
    """Language-model examples of the reading documents: tokens, mask, loss_mask `[N, T]` (every token after
    the first, and the EOS, is predicted). A document longer than `max_length` keeps its head."""
    token_ids = [encode(reading_document(problem)) for problem in problems]
    return document_examples(token_ids, [p.id for p in problems], eos_id, max_length)
