"""Disjoint train/test splits of the toy domain.

The test split is drawn first, from its own seed keys; the train split is drawn from different keys and
redraws any problem whose normalised question is in the test split. So the test set depends only on
(seed, test_per_band, bands), stays fixed when the train size changes, and shares no question with train.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from rstar_jax.data import Problem, normalize_question
from rstar_jax.toy.generator import BANDS, generate_problems


@dataclasses.dataclass(frozen=True)
class ToySpec:
    """Sizes and seed of the toy problem sets.

    Attributes:
      train_per_band: problems per band in the train split.
      test_per_band: problems per band in the test split.
      seed: integer seed of both splits.
      bands: which bands, in output order (each of `BANDS` at most once).
    """

    train_per_band: int
    test_per_band: int
    seed: int
    bands: tuple[str, ...] = BANDS

    def __post_init__(self) -> None:
        for name in ("train_per_band", "test_per_band", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ToySpec.{name} must be an int, got {type(value).__name__} {value!r}")
        if self.train_per_band < 0 or self.test_per_band < 0:
            raise ValueError(f"ToySpec: sizes must be >= 0, got {self.train_per_band}, {self.test_per_band}")
        bands = tuple(self.bands)
        unknown = [band for band in bands if band not in BANDS]
        if unknown or not bands or len(set(bands)) != len(bands):
            raise ValueError(f"ToySpec.bands must be distinct names from {BANDS}, got {bands!r}")
        object.__setattr__(self, "bands", bands)


class _Excluded:
    """Membership in either of two question collections (normalised texts)."""

    def __init__(self, *collections: Collection[str]):
        self.collections = collections

    def __contains__(self, text: object) -> bool:
        return any(text in c for c in self.collections)


def generate_toy_splits(spec: ToySpec, exclude: Collection[str] | None = None) -> dict[str, list[Problem]]:
    """``{"train": [...], "test": [...]}``, each the bands of `spec` in order, no question shared.

    `exclude`: questions neither split may contain; default the committed toy base's corpus
    (`base_corpus.committed_questions`), so no toy split ever holds a question the base was trained on."""
    if exclude is None:
        from rstar_jax.toy.base_corpus import committed_questions

        exclude = committed_questions()
    test: list[Problem] = []
    for band in spec.bands:
        test.extend(generate_problems(band, spec.test_per_band, spec.seed, split="test", exclude=exclude))
    test_texts = frozenset(normalize_question(problem.question) for problem in test)
    train: list[Problem] = []
    for band in spec.bands:
        train.extend(
            generate_problems(
                band, spec.train_per_band, spec.seed, split="train", exclude=_Excluded(test_texts, exclude)
            )
        )
    return {"train": train, "test": test}
