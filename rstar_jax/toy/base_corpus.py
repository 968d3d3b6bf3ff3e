"""The corpus of the committed toy base, and the question set that keeps every toy split disjoint from it.

    problems = corpus_problems(per_band=20000, seed=0)              # split "base": toy/base/<band>/<i>
    texts = [corpus_document(p) for p in problems]                  # prompt + canonical code-format solution
    read = QuestionSet.from_problems(problems); read.save(path)     # what ships next to the base
    "Nina has 14 shells. ..." in QuestionSet.load(path)             # normalised-question membership

The paper's policy starts from Qwen2.5-Math, a base that has read a great deal of mathematics, code-format
solutions included, before round 1. The toy base plays that part: a tiny decoder pretrained as a language model
on code-format solutions (the rStar step format of `rstar_jax.toy.solution`) of problems of its own split
("base"), drawn from the same generator with the corpus's own seed. It never sees a train or test problem: the
toy splits are generated with the committed base's `QuestionSet` excluded (`committed_questions`), so whatever
`toy.seed` a run uses, no question it trains or evaluates on was read by the base.

A document is exactly what an SFT record of a correct trajectory looks like (`build_prompt` of the question,
then the canonical response), so the base knows the format and the arithmetic idiom; whether it has learnt to
read a question well enough to solve new ones is measured, not assumed (the manifest's held-out metrics).

Hashes: `QuestionSet` keeps the first 8 bytes of blake2b(normalised question) as sorted uint64 [N]; a false
positive (a split question excluded though never read) has probability about N / 2^64 per question.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from rstar_jax.data import Problem, normalize_question
from rstar_jax.toy.generator import BANDS, generate_problems

__all__ = [
    "BASE_DIR",
    "BASE_SPLIT",
    "QUESTIONS_FILE",
    "QuestionSet",
    "committed_questions",
    "corpus_document",
    "corpus_problems",
]

BASE_SPLIT = "base"
QUESTIONS_FILE = "corpus_questions.npy"
BASE_DIR = Path(__file__).resolve().parent / "base"
"""The committed toy base (HF directory, package data), built by `python -m launch.pretrain`."""


def _hash(text: str) -> int:
    digest = hashlib.blake2b(normalize_question(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class QuestionSet:
    """A set of normalised questions, stored as sorted 64-bit hashes `[N]` uint64 (module docstring)."""

    def __init__(self, hashes: np.ndarray):
        self.hashes = np.unique(np.asarray(hashes, np.uint64))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> QuestionSet:
        return cls(np.fromiter((_hash(t) for t in texts), np.uint64))

    @classmethod
    def from_problems(cls, problems: Iterable[Problem]) -> QuestionSet:
        return cls.from_texts(p.question for p in problems)

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuestionSet:
        try:
            hashes = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a question-hash file ({e})") from None
        if hashes.dtype != np.uint64 or hashes.ndim != 1:
            raise ValueError(f"{path}: expected a 1-D uint64 array, got {hashes.dtype} {hashes.shape}")
        return cls(hashes)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            np.save(f, self.hashes, allow_pickle=False)

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str) or not len(self):
            return False
        h = np.uint64(_hash(text))
        i = int(np.searchsorted(self.hashes, h))
        return i < len(self) and self.hashes[i] == h

    def fingerprint(self) -> str:
        """sha256 of the sorted hashes: the corpus's identity in manifests."""
        return hashlib.sha256(self.hashes.tobytes()).hexdigest()


def committed_questions(base_dir: str | os.PathLike = BASE_DIR) -> QuestionSet:
    """The questions the committed base was trained on (empty when no base is committed)."""
    path = Path(base_dir) / QUESTIONS_FILE
    return QuestionSet.load(path) if path.is_file() else QuestionSet(np.zeros((0,), np.uint64))


def corpus_problems(per_band: int, seed: int, bands: Sequence[str] = BANDS, offset: int = 0) -> list[Problem]:
    """`per_band` problems of each band of the "base" split for `seed`, ids offset by `offset` (in band order).

    Problem i of a band depends only on (seed, band, i), so a larger corpus extends a smaller one."""
    out: list[Problem] = []
    for band in bands:
        out.extend(generate_problems(band, offset + per_band, seed, split=BASE_SPLIT)[offset:])
    return out


def corpus_document(problem: Problem) -> str:
    """The policy prompt of the question followed by its canonical code-format response."""
    from rstar_jax.search.steps import build_prompt
    from rstar_jax.toy.tokenizer import canonical_response

    return build_prompt(problem.question, ()) + canonical_response(problem)
