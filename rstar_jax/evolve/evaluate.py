"""A round's evaluation on held-out problems: greedy, majority vote, best-of-N and PPM-guided MCTS at equal samples.

    results = evaluate(problems, models=round_models, cfg=cfg, executor=executor, grader=grader, out_dir=...)

Methods (none reads the ground truth; it is used only to grade the final answers):
- `greedy`: one trajectory at temperature 0 (paper Table 3, the policy's pass@1);
- `majority_vote`, `best_of_n`: `evolve.eval_samples` trajectories per problem at `evolve.eval_temperature`,
  the SAME trajectories for both: the most frequent answer, and the answer of the trajectory the PPM scores
  highest;
- `mcts_ppm`: test-mode MCTS with `evolve.eval_samples` rollouts (so as many sampled trajectories as the votes),
  the highest-valued answer leaf (paper Table 6 for the round's policy and PPM);
- `ppm_fixed_policy`: the same MCTS with the round-1 policy (paper Table 4), when given. In round 1 the fixed
  policy is the round's own (`EvalModels.fixed_is_own`): Table 4's row is `mcts_ppm`'s, searched once.

`full=False` (a round outside `evolve.full_eval_rounds`) runs greedy only.

Each method's predictions go to `<out_dir>/<method>.json` (`[{id, answer, correct, band}]`) as soon as it
finishes; a rerun after a kill reuses the finished methods. Counts are per band (`problem.extra["band"]`, or
`all` only) as `{band: {"correct", "total"}}`; `per_problem(out_dir)` reads the files back as
`{method: {problem_id: correct}}` for the report's paired intervals. With several processes each evaluates its
share of the problems into a part directory of its own, and `merge_parts` (process 0) joins them, in problem order,
into the files one process writes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging

from rstar_jax.config import RunConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.search import Grader, SearchMode, baselines, is_correct, read_records, run_search, sample_trajectories
from rstar_jax.search.driver import Runner
from rstar_jax.search.steps import derive_seed
from rstar_jax.workdir import atomic_write_text, write_json

__all__ = ["METHODS", "EvalModels", "band_counts", "evaluate", "guided_mcts", "merge_parts", "per_problem"]

METHODS = ("greedy", "majority_vote", "best_of_n", "mcts_ppm", "ppm_fixed_policy")
Counts = dict[str, dict[str, int]]


@dataclasses.dataclass(frozen=True)
class EvalModels:
    """The models of one round's evaluation; policies are built lazily (loading and compiling take time)."""

    greedy_policy: Callable[[], Policy]
    sampling_policy: Callable[[], Policy]
    search_policy: Callable[[], Policy]
    ppm: Callable[[], ValueModel]
    fixed_search_policy: Callable[[], Policy] | None = None
    fixed_is_own: bool = False


def band_counts(problems: Sequence[Problem], correct: Sequence[bool]) -> Counts:
    """`{band: {"correct", "total"}, "all": ...}` (bands from `extra["band"]` when present)."""
    out: Counts = {}
    for problem, ok in zip(problems, correct, strict=True):
        band = problem.extra.get("band")
        for key in (band, "all") if band else ("all",):
            entry = out.setdefault(str(key), {"correct": 0, "total": 0})
            entry["correct"] += int(ok)
            entry["total"] += 1
    return out


class _Evaluator:
    def __init__(self, problems, models, cfg, executor, grader, out_dir):
        self.problems, self.models, self.cfg = list(problems), models, cfg
        self.executor, self.grader, self.out_dir = executor, grader, Path(out_dir)
        self.samples = cfg.evolve.eval_samples
        self.seed = derive_seed("evaluate", cfg.seed)

    def _save(self, method: str, answers: Sequence[str | None]) -> list[bool]:
        """Grades `answers` [P] against the problems and writes `<out_dir>/<method>.json`; returns correct [P]."""
        correct = [is_correct(self.grader, a, p.answer) for p, a in zip(self.problems, answers, strict=True)]
        rows = [
            {"id": p.id, "answer": a, "correct": ok, "band": p.extra.get("band")}
            for p, a, ok in zip(self.problems, answers, correct, strict=True)
        ]
        write_json(self.out_dir / f"{method}.json", rows)
        return correct

    def _load(self, method: str) -> list[bool] | None:
        path = self.out_dir / f"{method}.json"
        if not path.exists():
            return None
        rows = json.loads(path.read_text(encoding="utf-8"))
        if [r["id"] for r in rows] != [p.id for p in self.problems]:
            return None
        logging.info("evaluate: reusing %s", path)
        return [bool(r["correct"]) for r in rows]

    def greedy(self) -> list[bool]:
        predictions = baselines.greedy(
            self.problems,
            cfg=self.cfg.search,
            policy=self.models.greedy_policy(),
            executor=self.executor,
            grader=self.grader,
            run_seed=self.seed,
        )
        return self._save("greedy", [p.answer for p in predictions])

    def votes(self) -> tuple[list[bool], list[bool]]:
        """Majority vote and best-of-N over the same sampled trajectories [P][N], each PPM-scored once."""
        runs = sample_trajectories(
            self.problems,
            self.samples,
            cfg=self.cfg.search,
            policy=self.models.sampling_policy(),
            executor=self.executor,
            grader=self.grader,
            run_seed=self.seed,
        )
        scores = baselines.score_trajectories(runs, self.models.ppm())
        majority = [baselines.majority_answer(ts, self.grader) for ts in runs]
        best = [baselines.best_scored_answer(ts, ss) for ts, ss in zip(runs, scores, strict=True)]
        return self._save("majority_vote", majority), self._save("best_of_n", best)

    def mcts(self, method: str, policy: Policy) -> list[bool]:
        path = self.out_dir / f"{method}.trees.jsonl"
        search_cfg = dataclasses.replace(self.cfg.search, rollouts=self.samples)
        run_search(
            self.problems,
            path,
            cfg=search_cfg,
            mode=SearchMode.TEST,
            policy=policy,
            executor=self.executor,
            grader=self.grader,
            ppm=self.models.ppm(),
            run_seed=self.seed,
            progress=self.cfg.progress_bars,
        )
        best = {r["id"]: r["best_answer"] for r in read_records(path)}
        return self._save(method, [best.get(p.id) for p in self.problems])

    def alias(self, method: str, name: str) -> list[bool]:
        """Saves `method`'s finished predictions under a second `name` (the same search, another table)."""
        rows = json.loads((self.out_dir / f"{method}.json").read_text(encoding="utf-8"))
        write_json(self.out_dir / f"{name}.json", rows)
        return [bool(r["correct"]) for r in rows]


def evaluate(
    problems: Sequence[Problem],
    *,
    models: EvalModels,
    cfg: RunConfig,
    executor: Runner,
    grader: Grader,
    out_dir: str | Path,
    full: bool = True,
) -> dict[str, Counts]:
    """Runs (or reuses) the round's methods on `problems`; returns `{method: band counts}` (module docstring)."""
    ev = _Evaluator(problems, models, cfg, executor, grader, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    correct: dict[str, list[bool]] = {}
    correct["greedy"] = ev._load("greedy") or ev.greedy()
    if full:
        majority, best = ev._load("majority_vote"), ev._load("best_of_n")
        if majority is None or best is None:
            majority, best = ev.votes()
        correct["majority_vote"], correct["best_of_n"] = majority, best
        correct["mcts_ppm"] = ev._load("mcts_ppm") or ev.mcts("mcts_ppm", models.search_policy())
        if models.fixed_is_own:
            correct["ppm_fixed_policy"] = ev.alias("mcts_ppm", "ppm_fixed_policy")
        elif models.fixed_search_policy is not None:
            fixed = ev._load("ppm_fixed_policy") or ev.mcts("ppm_fixed_policy", models.fixed_search_policy())
            correct["ppm_fixed_policy"] = fixed
    return {m: band_counts(ev.problems, c) for m, c in correct.items()}


def merge_parts(problems: Sequence[Problem], parts: Sequence[Path], out_dir: Path) -> dict[str, Counts]:
    """Merges the processes' evaluations (each part directory: `evaluate`'s files for its share of `problems`)
    into `out_dir`'s `<method>.json` and `<method>.trees.jsonl`, in the order of `problems`; returns the counts."""
    order = {p.id: i for i, p in enumerate(problems)}
    counts: dict[str, Counts] = {}
    for method in METHODS:
        files = [d / f"{method}.json" for d in parts if (d / f"{method}.json").exists()]
        if not files:
            continue
        rows = sorted(
            (r for f in files for r in json.loads(f.read_text(encoding="utf-8"))), key=lambda r: order[r["id"]]
        )
        if [r["id"] for r in rows] != [p.id for p in problems]:
            raise RuntimeError(f"{out_dir}: the processes' {method} predictions do not cover the problems once each")
        write_json(out_dir / f"{method}.json", rows)
        counts[method] = band_counts(problems, [bool(r["correct"]) for r in rows])
        trees = [
            r
            for d in parts
            if (d / f"{method}.trees.jsonl").exists()
            for r in read_records(d / f"{method}.trees.jsonl")
        ]
        if trees:
            trees.sort(key=lambda r: order[r["id"]])
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in trees)
            atomic_write_text(out_dir / f"{method}.trees.jsonl", lines)
    return counts


def guided_mcts(
    problems: Sequence[Problem],
    method: str,
    *,
    policy: Callable[[], Policy],
    reward: Callable[[], ValueModel],
    cfg: RunConfig,
    executor: Runner,
    grader: Grader,
    out_dir: str | Path,
) -> Counts:
    """`mcts_ppm`'s search (same seeds, `evolve.eval_samples` rollouts) with any reward model (a PPM, ORM or PQM
    alike) as `<out_dir>/<method>.json`, reused when finished; returns its band counts (`evolve/ablation.py`)."""
    models = EvalModels(greedy_policy=policy, sampling_policy=policy, search_policy=policy, ppm=reward)
    ev = _Evaluator(problems, models, cfg, executor, grader, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return band_counts(ev.problems, ev._load(method) or ev.mcts(method, policy()))


def per_problem(out_dir: str | Path) -> dict[str, dict[str, bool]]:
    """`{method: {problem_id: correct}}` from the `<out_dir>/<method>.json` files present, in `METHODS` order."""
    out = {}
    for method in METHODS:
        path = Path(out_dir) / f"{method}.json"
        if path.exists():
            out[method] = {str(r["id"]): bool(r["correct"]) for r in json.loads(path.read_text(encoding="utf-8"))}
    return out
