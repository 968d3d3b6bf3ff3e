"""Evaluation helpers: band counts, majority vote, and the problem-level held-out split of training examples."""

import numpy as np

from rstar_jax.data import Problem
from rstar_jax.evolve.evaluate import band_counts
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


def _plan_setup(tmp_path):
    """(cfg, problems, policy, ppm): the scripted toy policy and a hash PPM on three toy problems."""
    from rstar_jax.config import EvolveConfig, RunConfig, SearchConfig
    from rstar_jax.testing import HashPPM, ScriptedToyPolicy
    from rstar_jax.toy.generator import BANDS, generate_problems

    problems = [generate_problems(band, 1, 0)[0] for band in BANDS]
    cfg = RunConfig(
        seed=0,
        workdir=str(tmp_path / "wd"),
        progress_bars=False,
        search=SearchConfig(rollouts=2, samples_per_expansion=2, max_depth=12, batch_problems=8),
        evolve=EvolveConfig(eval_samples=2),
    )
    return cfg, problems, ScriptedToyPolicy(problems, mistake_rate=0.3), HashPPM()


def _never():
    raise AssertionError("a method outside the round's plan loaded its model")


def _evaluate_plan(tmp_path, *, full, own, fixed):
    import json

    from rstar_jax.evolve.evaluate import EvalModels, evaluate
    from rstar_jax.execution import Executor

    cfg, problems, policy, ppm = _plan_setup(tmp_path)
    other = type(policy)(problems, mistake_rate=0.0)  # the "round-1" policy: a different one
    models = EvalModels(
        greedy_policy=lambda: policy,
        sampling_policy=(lambda: policy) if full else _never,
        search_policy=(lambda: policy) if full else _never,
        ppm=lambda: ppm,
        fixed_search_policy=(lambda: other) if fixed else None,
        fixed_is_own=own,
    )
    out = tmp_path / "eval"
    with Executor(timeout_s=5.0, workers=1) as executor:
        counts = evaluate(
            problems, models=models, cfg=cfg, executor=executor, grader=BoxGrader(), out_dir=out, full=full
        )
    files = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    return counts, files, other


def test_round_one_searches_table4_once_as_its_own_mcts(tmp_path):
    counts, files, other = _evaluate_plan(tmp_path, full=True, own=True, fixed=False)
    assert set(counts) == {"greedy", "majority_vote", "best_of_n", "mcts_ppm", "ppm_fixed_policy"}
    assert files["ppm_fixed_policy"] == files["mcts_ppm"] and not other.calls
    assert not list((tmp_path / "eval").glob("ppm_fixed_policy.trees.jsonl"))  # one search, two tables


def test_later_full_round_searches_with_the_fixed_policy_too(tmp_path):
    counts, files, other = _evaluate_plan(tmp_path, full=True, own=False, fixed=True)
    assert set(counts) == {"greedy", "majority_vote", "best_of_n", "mcts_ppm", "ppm_fixed_policy"} == set(files)
    assert other.calls  # Table 4 searched with the round-1 policy


def test_round_outside_full_eval_rounds_runs_greedy_only(tmp_path):
    counts, files, other = _evaluate_plan(tmp_path, full=False, own=False, fixed=True)
    assert set(counts) == {"greedy"} == set(files) and not other.calls
