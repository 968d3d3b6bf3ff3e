"""Test-time methods with the search's interfaces: greedy, votes, best-of-N, beam search, the paper protocol.

Every method takes problems and returns one `Prediction` per problem; none reads the ground truth.

- `greedy`: one trajectory (give it a temperature-0 policy).
- `self_consistency`: N trajectories, majority vote by answer equivalence.
- `best_of_n`: N trajectories, the answer of the one with the highest PPM score.
- `weighted_vote`: N trajectories, answers grouped by equivalence, the group with the largest sum of PPM scores.
- `step_beam_search`: `trajectories.beam_search`, the highest-scored answer.
- `mcts`: one test-mode MCTS run of `cfg.rollouts` rollouts, the answer of its highest-Q answer leaf
  (`records.best_answer`, as the reference's `select_best_answer`).
- `paper_protocol`: `cfg.protocol_runs` independent test-mode MCTS runs (seeds derived from the run seed and the
  run index), each run's best answer (its highest-Q answer leaf), the top `cfg.protocol_top_k` by value, majority
  vote (rstar_reference.md Part B §10).

The selection rules work on trajectories already sampled (and scores already computed), so one set of samples
can feed several rules (the round evaluation's majority vote and best-of-N): `majority_answer`,
`best_scored_answer`, `weighted_answer`; `score_trajectories` scores every trajectory once.

Votes group answers greedily: an answer joins the first group whose first member it matches (`Grader.match`).
Ties between groups go to the group whose first member came first (for the paper protocol: the higher-valued),
never to a random draw (the reference's unseeded `random.sample`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.search.driver import BatchSearch, Runner, SearchMode, TreeKernels
from rstar_jax.search.grader import Grader
from rstar_jax.search.records import batch_records
from rstar_jax.search.steps import derive_seed
from rstar_jax.search.trajectories import Trajectory, beam_search, sample_trajectories

__all__ = [
    "Prediction",
    "best_of_n",
    "best_scored_answer",
    "greedy",
    "group_answers",
    "majority_answer",
    "mcts",
    "paper_protocol",
    "score_trajectories",
    "self_consistency",
    "step_beam_search",
    "weighted_answer",
    "weighted_vote",
]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A method's answer for one problem (None when it found none) and the (answer, score) candidates it used."""

    problem_id: str
    answer: str | None
    candidates: tuple[tuple[str | None, float], ...] = ()


def group_answers(answers: Sequence[str], grader: Grader) -> list[list[int]]:
    """Indices of `answers` grouped by equivalence to each group's first member, groups in first-seen order."""
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        for group in groups:
            if grader.match(answer, answers[group[0]]):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _vote(answers: Sequence[str | None], weights: Sequence[float], grader: Grader) -> str | None:
    """The answer of the group with the largest total weight (first group on ties); None answers never vote."""
    kept = [(a, w) for a, w in zip(answers, weights, strict=True) if a is not None]
    if not kept:
        return None
    groups = group_answers([a for a, _ in kept], grader)
    totals = [sum(kept[i][1] for i in group) for group in groups]
    best = max(range(len(groups)), key=lambda g: (totals[g], -g))
    return kept[groups[best][0]][0]


def majority_answer(trajectories: Sequence[Trajectory], grader: Grader) -> str | None:
    """The most frequent answer of one problem's trajectories [N] by equivalence (module docstring for ties)."""
    return _vote([t.answer for t in trajectories], [1.0] * len(trajectories), grader)


def best_scored_answer(trajectories: Sequence[Trajectory], scores: Sequence[float]) -> str | None:
    """The answer of the highest-scored trajectory among those that answered (the first on ties); scores [N]."""
    answered = [(t.answer, s) for t, s in zip(trajectories, scores, strict=True) if t.answer is not None]
    return max(answered, key=lambda c: c[1])[0] if answered else None  # max keeps the first on ties


def weighted_answer(trajectories: Sequence[Trajectory], scores: Sequence[float], grader: Grader) -> str | None:
    """The answer of the equivalence group with the largest sum of scores [N] (module docstring for ties)."""
    return _vote([t.answer for t in trajectories], scores, grader)


def score_trajectories(runs: Sequence[Sequence[Trajectory]], ppm: ValueModel) -> list[list[float]]:
    """PPM scores [P][N] of trajectories [P][N] (`Trajectory.text`), every trajectory scored once in one call (none
    when there is no trajectory: the scorer is never given an empty list)."""
    texts = [t.text for trajectories in runs for t in trajectories]
    flat = ppm.score(texts).tolist() if texts else []
    out, lo = [], 0
    for trajectories in runs:
        out.append([float(s) for s in flat[lo : lo + len(trajectories)]])
        lo += len(trajectories)
    return out


def greedy(
    problems: Sequence[Problem], *, cfg: SearchConfig, policy: Policy, executor: Runner, grader: Grader, run_seed: int
) -> list[Prediction]:
    """One trajectory per problem; its answer."""
    runs = sample_trajectories(problems, 1, cfg=cfg, policy=policy, executor=executor, grader=grader, run_seed=run_seed)
    return [Prediction(p.id, t[0].answer, ((t[0].answer, 1.0),)) for p, t in zip(problems, runs, strict=True)]


def self_consistency(
    problems: Sequence[Problem],
    num: int,
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    run_seed: int,
) -> list[Prediction]:
    """`num` trajectories per problem, `majority_answer`."""
    runs = sample_trajectories(
        problems, num, cfg=cfg, policy=policy, executor=executor, grader=grader, run_seed=run_seed
    )
    return [
        Prediction(p.id, majority_answer(ts, grader), tuple((t.answer, 1.0) for t in ts))
        for p, ts in zip(problems, runs, strict=True)
    ]


def best_of_n(
    problems: Sequence[Problem],
    num: int,
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[Prediction]:
    """`num` trajectories per problem; `best_scored_answer` under the PPM."""
    runs = sample_trajectories(
        problems, num, cfg=cfg, policy=policy, executor=executor, grader=grader, run_seed=run_seed
    )
    return [
        Prediction(p.id, best_scored_answer(ts, ss), tuple((t.answer, s) for t, s in zip(ts, ss, strict=True)))
        for p, ts, ss in zip(problems, runs, score_trajectories(runs, ppm), strict=True)
    ]


def weighted_vote(
    problems: Sequence[Problem],
    num: int,
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[Prediction]:
    """`num` trajectories per problem; `weighted_answer` under the PPM."""
    runs = sample_trajectories(
        problems, num, cfg=cfg, policy=policy, executor=executor, grader=grader, run_seed=run_seed
    )
    return [
        Prediction(p.id, weighted_answer(ts, ss, grader), tuple((t.answer, s) for t, s in zip(ts, ss, strict=True)))
        for p, ts, ss in zip(problems, runs, score_trajectories(runs, ppm), strict=True)
    ]


def step_beam_search(
    problems: Sequence[Problem],
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[Prediction]:
    """Step-level beam search; the highest-scored answer found."""
    found = beam_search(problems, cfg=cfg, policy=policy, executor=executor, grader=grader, ppm=ppm, run_seed=run_seed)
    out = []
    for problem, answers in zip(problems, found, strict=True):
        cands = tuple((t.answer, s) for t, s in answers)
        best = next((a for a, _ in cands if a is not None), None)
        out.append(Prediction(problem.id, best, cands))
    return out


def _mcts_candidates(problems, cfg, policy, executor, grader, ppm, seed) -> dict[str, tuple[str | None, float]]:
    """`{problem_id: (best answer, its value)}` of one test-mode MCTS run over `problems` in batches."""
    kernels = TreeKernels.build(cfg)
    out: dict[str, tuple[str | None, float]] = {}
    for lo in range(0, len(problems), cfg.batch_problems):
        batch = problems[lo : lo + cfg.batch_problems]
        search = BatchSearch(batch, cfg, SearchMode.TEST, policy, executor, grader, ppm, seed, kernels).run_rollouts()
        for record in batch_records(search):
            value = record["best_value"]
            out[record["id"]] = (record["best_answer"], float(value) if value is not None else float("nan"))
    return out


def mcts(
    problems: Sequence[Problem],
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[Prediction]:
    """One test-mode MCTS run (`cfg.rollouts` rollouts) per problem; its highest-Q answer leaf's answer."""
    found = _mcts_candidates(problems, cfg, policy, executor, grader, ppm, run_seed)
    return [Prediction(p.id, found[p.id][0], (found[p.id],) if found[p.id][0] is not None else ()) for p in problems]


def paper_protocol(
    problems: Sequence[Problem],
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[Prediction]:
    """K independent test-mode MCTS runs, top-k run answers by PPM value, majority vote (module docstring)."""
    per_problem: dict[str, list[tuple[str, float]]] = {p.id: [] for p in problems}
    for run in range(cfg.protocol_runs):
        seed = derive_seed("protocol-run", run_seed, run)
        for pid, (answer, value) in _mcts_candidates(problems, cfg, policy, executor, grader, ppm, seed).items():
            if answer is not None:
                per_problem[pid].append((answer, value))
    out = []
    for problem in problems:
        top = sorted(per_problem[problem.id], key=lambda c: -c[1])[: cfg.protocol_top_k]
        answer = _vote([a for a, _ in top], [1.0] * len(top), grader)
        out.append(Prediction(problem.id, answer, tuple(top)))
    return out
