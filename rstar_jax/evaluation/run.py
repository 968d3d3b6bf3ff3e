"""`launch.evaluate`'s library: benchmarks x methods x budgets, resumable per problem, then tables and curves.

    summary = evaluate(cfg)     # cfg: a validated RunConfig; its section `eval` says what to run

Problem sets (`load_problem_sets`): each name of `eval.benchmarks` (`data.benchmark_dir`; 'toy' is the toy's test
split of section `toy`) and `eval.problem_file` (named by its file stem), each cut to its first `eval.problems`.
For every set, method and budget (greedy once), problems not yet in `<out>/<set>/<method>@<budget>.jsonl` run in
chunks of `eval.chunk` (`methods.run_chunk`) and are appended as they finish (`store.PredictionFile`), so a
killed run resumes where it stopped. Then `<out>/results.{json,md}` and, with several budgets,
`<out>/curves_<set>.png`.

Models (`load_models`): the policy `eval.policy` and the reward model `eval.reward_model` (HF directories, loaded
through `evolve.model_cache.ModelCache`), which must share one tokenizer (same vocabulary), since the reward model
scores the policy's texts. Every user error names the flag, the file or the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rstar_jax import data, devices, models
from rstar_jax.config import ConfigError, EvalMethod, RunConfig
from rstar_jax.evaluation.methods import EvalModels, Meter, run_chunk
from rstar_jax.evaluation.store import PredictionFile
from rstar_jax.evaluation.summary import Cell, summarise, write_curves, write_tables
from rstar_jax.evolve.model_cache import ModelCache
from rstar_jax.execution import Executor
from rstar_jax.progress import Progress
from rstar_jax.search import Grader, ProjectGrader
from rstar_jax.search.steps import derive_seed

__all__ = ["Loaded", "evaluate", "load_models", "load_problem_sets", "param_count"]


def load_problem_sets(cfg: RunConfig) -> dict[str, list[data.Problem]]:
    """`{set name: problems}` of `eval.benchmarks` and `eval.problem_file` (module docstring)."""
    e = cfg.eval
    sets: dict[str, list[data.Problem]] = {}
    for name in e.benchmarks:
        if name == "toy":
            from rstar_jax import toy

            spec = toy.ToySpec(
                train_per_band=cfg.toy.train_per_band,
                test_per_band=cfg.toy.test_per_band,
                seed=cfg.toy.seed,
                bands=tuple(b.value for b in cfg.toy.bands),
            )
            sets[name] = list(toy.generate_toy_splits(spec)["test"])
        else:
            sets[name] = list(data.load_benchmark(name, cfg.data.benchmark_dir or None).problems)
    if e.problem_file:
        loaded = list(data.load_problems(e.problem_file, skip_bad=cfg.data.skip_bad_records).problems)
        if not loaded:
            raise ConfigError(f"config.eval.problem_file = {e.problem_file!r}: the file holds no problems")
        sets[Path(e.problem_file).stem] = loaded
    if not sets:
        raise ConfigError(
            "config.eval.benchmarks is empty and config.eval.problem_file is not set: nothing to evaluate"
        )
    return {k: v[: e.problems] if e.problems else v for k, v in sets.items()}


def param_count(model_dir: str | Path) -> int:
    """Parameters of the HF model in `model_dir`, from its safetensors headers (nothing is loaded)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        header, _ = models.safetensors_header(path)  # a WeightsError names an empty or corrupt file
        total += sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__")
    return total


@dataclass(frozen=True)
class Loaded:
    """The evaluation's models, their token counters and parameter counts (policy, reward)."""

    models: EvalModels
    meter: Meter
    params: tuple[int, int]


def _model_dir(flag: str, value: str) -> Path:
    if not value:
        raise ConfigError(f"config.eval.{flag} is required: the HF directory of the model")
    path = Path(value).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"config.eval.{flag} = {value!r}: no HF model directory there (no config.json)")
    return path


def _counter(tokenizer: Any):
    return lambda texts: [len(ids) for ids in tokenizer(list(texts))["input_ids"]] if texts else []


def load_models(cfg: RunConfig, methods: tuple[EvalMethod, ...], mesh: Any) -> Loaded:
    """The policy and (when a method needs one and it is set) the reward model; checks their tokenizers agree."""
    from rstar_jax.evaluation.methods import needs_reward

    e = cfg.eval
    policy_dir = _model_dir("policy", e.policy)
    policy_tok = models.load_tokenizer(policy_dir, models.load_config(policy_dir))
    reward_dir = _model_dir("reward_model", e.reward_model) if e.reward_model else None
    if reward_dir is None and any(needs_reward(m) for m in methods):
        wanted = ", ".join(m.value for m in methods if needs_reward(m))
        raise ConfigError(f"config.eval.methods: {wanted} need config.eval.reward_model (an HF directory)")
    reward_tok = policy_tok
    if reward_dir is not None:
        reward_tok = models.load_tokenizer(reward_dir, models.load_config(reward_dir))
        if reward_tok.get_vocab() != policy_tok.get_vocab():
            raise ConfigError(
                f"config.eval.policy = {e.policy!r} and config.eval.reward_model = {e.reward_model!r} have different "
                "tokenizers: the reward model must score the policy's texts with the same vocabulary"
            )
    cache = ModelCache(cfg, mesh)
    reward = (lambda: cache.ppm(reward_dir)) if reward_dir is not None else None
    return Loaded(
        EvalModels(policy=lambda t: cache.policy(policy_dir, t), reward=reward),
        Meter(_counter(policy_tok), _counter(reward_tok)),
        (param_count(policy_dir), param_count(reward_dir) if reward_dir is not None else 0),
    )


def evaluate_sets(
    cfg: RunConfig, sets: dict[str, list[data.Problem]], loaded: Loaded, executor: Any, grader: Grader, out: Path
) -> list[Cell]:
    """Runs what is missing of every set x method x budget (module docstring); returns the summary cells."""
    e = cfg.eval
    seed = derive_seed("evaluate", cfg.seed)
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    plan = [(s, m, b) for s in sets for m in e.methods for b in ((1,) if m is EvalMethod.GREEDY else e.budgets)]
    for name, method, budget in plan:
        store = PredictionFile(out / name / f"{method.value}@{budget}.jsonl")
        todo = [p for p in sets[name] if p.id not in store.done]
        bar = Progress(
            total=len(todo),
            desc=f"{name} {method.value}@{budget}",
            unit="problem",
            enabled=cfg.progress_bars and bool(todo),
        )
        for lo in range(0, len(todo), e.chunk):
            chunk = todo[lo : lo + e.chunk]
            store.append(
                run_chunk(
                    method,
                    budget,
                    chunk,
                    models=loaded.models,
                    cfg=cfg.search,
                    meter=loaded.meter,
                    executor=executor,
                    grader=grader,
                    temperature=e.temperature,
                    run_seed=seed,
                )
            )
            bar.update(len(chunk))
        bar.close()
        wanted = {p.id for p in sets[name]}
        rows[name, method.value, budget] = [r for r in store.rows if r["id"] in wanted]
    return summarise(rows, loaded.params)


def evaluate(cfg: RunConfig) -> dict[str, Any]:
    """Everything `launch.evaluate` does (module docstring); returns `{"cells", "tables", "curves"}` paths/data."""
    e = cfg.eval
    out = Path(e.out or Path(cfg.workdir) / "eval")
    sets = load_problem_sets(cfg)
    mesh = devices.run_mesh(cfg.mesh)  # the models load sharded on it (1 x 1 x 1: one device)
    loaded = load_models(cfg, e.methods, mesh)
    executor = Executor.from_config(cfg.execution)
    grader = ProjectGrader(cfg.grading.timeout_s, cfg.grading.percent_as_fraction)
    with executor, devices.on_mesh(mesh):
        cells = evaluate_sets(cfg, sets, loaded, executor, grader, out)
    tables = write_tables(cells, out)
    curves = write_curves(cells, out, e.budget_axis) if len(e.budgets) > 1 else []
    return {"cells": cells, "tables": tables, "curves": curves}
