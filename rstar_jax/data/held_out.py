"""The held-out problems of a real-data run: seeded benchmark subsets, and the training problems that overlap them.

    chosen = benchmark_subset(load_benchmark("math500").problems, 100, seed=cfg.seed)   # file order kept
    kept, dropped = drop_overlap(train, chosen)                                          # dropped: ids

`benchmark_subset(problems, n, seed)`: at most `n` problems (0 = all) of one benchmark. The rule: rank every
problem by `sha256(f"{seed}:{problem.id}")` (hex, ascending), keep the first `n` of that ranking, return them in
file order. A problem's rank depends only on the seed and its own id, so growing `n` keeps every problem chosen
before, and a changed or reordered file changes the choice only where its ids changed.

`normalize_for_overlap(question)` is the match key of `drop_overlap`: a training problem is dropped when its key
equals the key of any evaluated problem (so training never sees an evaluated question). The key is meant to
catch the same question re-typed or re-typeset, not paraphrases:
1. Unicode NFKC, then case-folded;
2. LaTeX spacing and sizing removed: `\\,` `\\;` `\\:` `\\!` `\\ ` `\\quad` `\\qquad` `~` `\\left` `\\right` and the
   math delimiters `$`, `\\(`, `\\)`, `\\[`, `\\]`;
3. punctuation removed: the sentence marks `. , ; : ! ?` where followed by whitespace or the end (so `1.5` and
   `1,000` keep theirs) and the quotes `" ' `` ``;
4. all whitespace removed (`x + 1` and `x+1` match).

This is stricter than `rstar_jax.data.normalize_question`, the key of the duplicate reports and content hashes
(NFKC and whitespace only), which is left unchanged.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

from rstar_jax.data.problem import Problem

__all__ = ["benchmark_subset", "drop_overlap", "normalize_for_overlap"]

_LATEX_SPACING = re.compile(r"\\(?:q?quad(?![a-z])|left(?![a-z])|right(?![a-z])|[,;:! ()\[\]])|[~$]")
_SENTENCE_MARK = re.compile(r"[.,;:!?]+(?=\s|$)")
_QUOTES = re.compile("[\"'`\u2018\u2019\u201c\u201d]")
_SPACE = re.compile(r"\s+")


def normalize_for_overlap(question: str) -> str:
    """The overlap key of a question (module docstring, steps 1-4)."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = _LATEX_SPACING.sub(" ", text)
    text = _SENTENCE_MARK.sub(" ", text)
    text = _QUOTES.sub("", text)
    return _SPACE.sub("", text)


def _rank(seed: int, problem_id: str) -> str:
    return hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest()


def benchmark_subset(problems: Sequence[Problem], n: int, seed: int) -> list[Problem]:
    """At most `n` of `problems` (0 = all), chosen by the seeded hash rank, in their original order."""
    if n < 0:
        raise ValueError(f"benchmark_subset: n = {n}, must be >= 0 (0 = all)")
    if n == 0 or n >= len(problems):
        return list(problems)
    chosen = set(sorted((p.id for p in problems), key=lambda i: _rank(seed, i))[:n])
    return [p for p in problems if p.id in chosen]


def drop_overlap(train: Iterable[Problem], held_out: Iterable[Problem]) -> tuple[list[Problem], list[str]]:
    """`(kept, dropped_ids)`: the training problems whose overlap key matches no held-out problem's, and the ids
    of those that do (in training order)."""
    keys = {normalize_for_overlap(p.question) for p in held_out}
    kept: list[Problem] = []
    dropped: list[str] = []
    for problem in train:
        if normalize_for_overlap(problem.question) in keys:
            dropped.append(problem.id)
        else:
            kept.append(problem)
    return kept, dropped
