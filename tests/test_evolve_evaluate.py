"""Evaluation helpers: band counts, majority vote, and the problem-level held-out split of training examples."""

import numpy as np

from rstar_jax.data import Problem
from rstar_jax.evolve.evaluate import _majority, band_counts
from rstar_jax.testing import BoxGrader
from rstar_jax.train import Examples, split_by_problem


def _problem(i, band=None):
    return Problem(id=f"p{i}", question=f"q{i}", answer="1", extra={"band": band} if band else {})


def test_band_counts_per_band_and_all():
    problems = [_problem(0, "gsm"), _problem(1, "gsm"), _problem(2, "math")]
    assert band_counts(problems, [True, False, True]) == {
        "gsm": {"correct": 1, "total": 2},
        "math": {"correct": 1, "total": 1},
        "all": {"correct": 2, "total": 3},
    }
    assert band_counts([_problem(0)], [False]) == {"all": {"correct": 0, "total": 1}}


def test_majority_vote_groups_equivalent_answers_and_breaks_ties_by_first_seen():
    grader = BoxGrader()
    assert _majority(["3", None, "4", "4", "3", "4"], grader) == "4"
    assert _majority(["5", "6"], grader) == "5"
    assert _majority([None, None], grader) is None


def test_split_by_problem_never_shares_a_problem_between_sides():
    ids = tuple(f"p{i % 10}" for i in range(60))
    examples = Examples({"x": np.arange(60)}, ids)
    fit, held = split_by_problem(examples, 0.2, seed=3)
    assert len(fit) + len(held) == 60
    assert set(held.ids) and not set(fit.ids) & set(held.ids)
    assert len(set(held.ids)) == 2
    again, _ = split_by_problem(examples, 0.2, seed=3)
    assert again.ids == fit.ids
    everything, none = split_by_problem(examples, 0.0, seed=3)
    assert len(everything) == 60 and len(none) == 0
