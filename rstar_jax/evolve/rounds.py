"""The stages of a self-evolution round: trees -> extract -> policy SFT -> PPM -> evaluate -> report, each
resumable; `evolve.run.evolve` calls them in that order, after the base model's stage.

    with round_context(cfg, run_dir, splits, problems_digest, stages, base) as ctx:
        trees = search_trees(ctx, r); data = extract_data(ctx, r, trees)
        sft = train_policy(ctx, r, data); ppm = train_ppm(ctx, r, data, sft)
        metrics = round_report(ctx, r, trees, data, ppm, evaluate(ctx, r, sft, ppm))
    cumulative_report(run_dir)

Layout of `<workdir>/round_<r>/` (each stage directory holds its `manifest.json`, see `stages`):

    trees/     trees.jsonl: one MCTS tree per training problem; round 4 adds trees_unsolved.jsonl (and
               trees_unsolved_<k>.jsonl for the k-th search of `evolve.unsolved_more_rollouts`)
    data/      sft.json, pairs.json, stats.json: the extracted training data (rstar_reference.md Part A); with
               `evolve.sft_replay`, sft.json also keeps round r-1's records of problems round r did not solve
    sft/       policy/ (HF *ForCausalLM), run/ (checkpoints, metrics.jsonl, TensorBoard events)
    ppm/       model/ (HF *ForSequenceClassification with the value head), run/
    eval/      one JSON of predictions per method, MCTS tree files
    report/    round_<r>.{md,json,png}, round_<r>_training.png (loss curves), tree viewer pages (*.html)

The cumulative report (`<workdir>/report/`) covers every round of the workdir that has one, so `configs/round2.py`
run after `configs/round1.py` on the same workdir reports both.

Who searches (paper §3.4.2, Part A "rounds"): round 1 the bootstrap policy, terminal-guided, with
`evolve.bootstrap_rollouts`, prompted with the reference's few-shot prompt when it is a model
(`evolve.bootstrap_shots`, `search.prompts.FewShotPrompt`; the toy teacher reads the SFT template); round r >= 2
the round r-1 policy with the SFT template and `search.rollouts`, and from round `evolve.ppm_from_round` on the
round r-1 PPM initialises new children's Q. The last paper round (4) then
searches the still-unsolved problems again with `evolve.unsolved_rollouts` rollouts and new seeds, then, for each
entry of `evolve.unsolved_more_rollouts`, the problems still unsolved once more with that many rollouts and new
seeds (paper: 64 more rollouts, then up to 128). A problem solved by one search is not searched again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax import extract
from rstar_jax.config import RunConfig, SftInit, to_dict
from rstar_jax.data import Problem
from rstar_jax.evolve import evaluate as evaluation
from rstar_jax.evolve import report, report_assets
from rstar_jax.evolve.inputs import Splits
from rstar_jax.evolve.model_cache import ModelCache, bootstrap_identity, bootstrap_policy, bootstrap_prompt
from rstar_jax.evolve.stages import Stages, digest
from rstar_jax.execution import Executor
from rstar_jax.search import ProjectGrader, SearchMode, read_records, run_search
from rstar_jax.search.driver import Runner
from rstar_jax.search.grader import Grader
from rstar_jax.search.prompts import FewShotPrompt, sft_prompt
from rstar_jax.search.steps import derive_seed
from rstar_jax.train import Kind, fit
from rstar_jax.workdir import RunDir, write_json

__all__ = [
    "Base",
    "RoundContext",
    "cumulative_report",
    "evaluate",
    "extract_data",
    "round_context",
    "round_report",
    "search_trees",
    "train_policy",
    "train_ppm",
]

UNSOLVED_ROUND = 4


@dataclasses.dataclass
class RoundContext:
    """What every round shares: config, run directory, problems, tools, the stage runner and the model cache."""

    cfg: RunConfig
    run_dir: RunDir
    train: list[Problem]
    test: list[Problem]
    problems_digest: str
    base_dir: Path
    base_digest: str
    executor: Runner
    grader: Grader
    stages: Stages
    models: ModelCache


Base = tuple[Path, str]  # a model to start from: its HF directory and its fingerprint


@contextlib.contextmanager
def round_context(
    cfg: RunConfig, run_dir: RunDir, splits: Splits, problems_digest: str, stages: Stages, base: Base
) -> Iterator[RoundContext]:
    """What the rounds share, with the sandboxed executor's worker pool open until the context exits."""
    ex = cfg.execution
    executor = Executor(
        timeout_s=ex.timeout_s,
        memory_mb=ex.memory_mb,
        max_output_chars=ex.max_output_chars,
        workers=ex.workers or None,
        round_floats=ex.round_floats,
    )
    with executor:
        yield RoundContext(
            cfg=cfg,
            run_dir=run_dir,
            train=splits.train,
            test=splits.test,
            problems_digest=problems_digest,
            base_dir=base[0],
            base_digest=base[1],
            executor=executor,
            grader=ProjectGrader(cfg.grading.timeout_s, cfg.grading.percent_as_fraction),
            stages=stages,
            models=ModelCache(cfg),
        )


def _solved(record: dict[str, Any]) -> bool:
    """Whether a data-generation tree holds a correct answer leaf (value +1 against the ground truth)."""
    return any(n.get("terminal_kind") == "answer" and n.get("value", 0.0) > 0 for n in record["rstar"].values())


def _unsolved_tiers(cfg: RunConfig, r: int) -> tuple[int, ...]:
    """Rollouts of round r's searches of the problems its earlier searches left unsolved, in order (round 4 only)."""
    if r != UNSOLVED_ROUND or not cfg.evolve.unsolved_rollouts:
        return ()
    return (cfg.evolve.unsolved_rollouts, *cfg.evolve.unsolved_more_rollouts)


def _cold(*models: Any) -> None:
    """Empties the prefix caches of `ModelCache`'s models (kept across stages) before a search, so its trees do not
    depend on what ran earlier in the process: cached prefixes change the padded shapes and with them the rounding
    of the PPM's values, and a resumed stage must write the same trees as an uninterrupted run."""
    for model in models:
        if hasattr(model, "clear_cache"):
            model.clear_cache()


def _coverage(ctx: RoundContext, solved: set[str]) -> dict[str, dict[str, int]]:
    return evaluation.band_counts(ctx.train, [p.id in solved for p in ctx.train])


def _previous(ctx: RoundContext, r: int, stage: str) -> tuple[Path, dict[str, Any]]:
    """A finished stage of round r - 1 (its directory and outputs), or a clear error when it is missing."""
    stage_dir = getattr(ctx.run_dir.round(r - 1), stage)
    outputs = ctx.stages.finished(stage_dir)
    if outputs is None:
        raise FileNotFoundError(
            f"round {r} needs round {r - 1}'s {stage} stage, but {stage_dir / 'manifest.json'} is missing: run round "
            f"{r - 1} first with the same config.workdir ({ctx.run_dir.root})"
        )
    return stage_dir, outputs


def search_trees(ctx: RoundContext, r: int) -> dict[str, Any]:
    """Stage `round_<r>/trees`: one MCTS tree per training problem (module docstring: who searches)."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    rollouts = cfg.evolve.bootstrap_rollouts if r == 1 else cfg.search.rollouts
    use_ppm = r >= cfg.evolve.ppm_from_round
    inputs: dict[str, Any] = {
        "problems": ctx.problems_digest,
        "search": to_dict(cfg.search) | {"rollouts": rollouts},
        "mode": (SearchMode.PPM_AUGMENTED if use_ppm else SearchMode.TERMINAL).value,
        "seed": cfg.seed,
        "unsolved_rollouts": cfg.evolve.unsolved_rollouts if r == UNSOLVED_ROUND else 0,
    }
    tiers = _unsolved_tiers(cfg, r)
    if len(tiers) > 1:  # only when set: round-4 workdirs made before the later searches existed still resume
        inputs["unsolved_more_rollouts"] = list(tiers[1:])
    prompt = bootstrap_prompt(cfg) if r == 1 else sft_prompt
    if isinstance(prompt, FewShotPrompt):  # only then: toy workdirs made before the few-shot prompt still resume
        inputs["prompt"] = prompt.identity()
    if r == 1:
        inputs["policy"] = bootstrap_identity(cfg)
    else:
        inputs["policy"] = digest(_previous(ctx, r, "sft")[1])
    if use_ppm:
        inputs["ppm"] = digest(_previous(ctx, r, "ppm")[1])

    def body() -> dict[str, Any]:
        if r == 1:
            policy = bootstrap_policy(cfg, ctx.train, ctx.models)
        else:
            policy = ctx.models.policy(_previous(ctx, r, "sft")[0] / "policy", cfg.search.temperature)
        ppm = ctx.models.ppm(_previous(ctx, r, "ppm")[0] / "model") if use_ppm else None
        mode = SearchMode.PPM_AUGMENTED if use_ppm else SearchMode.TERMINAL
        common = dict(mode=mode, policy=policy, executor=ctx.executor, grader=ctx.grader, ppm=ppm, prompt=prompt)
        path = rd.trees / "trees.jsonl"
        search_cfg = dataclasses.replace(cfg.search, rollouts=rollouts)
        seed = derive_seed("round", cfg.seed, r)
        _cold(policy, ppm)
        run_search(ctx.train, path, cfg=search_cfg, run_seed=seed, progress=cfg.progress_bars, **common)
        records = list(read_records(path))
        files = [path]
        for k, tier_rollouts in enumerate(tiers):
            unsolved = [p for p in ctx.train if p.id not in {x["id"] for x in records if _solved(x)}]
            if not unsolved:
                break
            if k == 0:
                logging.info("round %d: %d unsolved problems searched again", r, len(unsolved))
                extra, extra_seed = rd.trees / "trees_unsolved.jsonl", derive_seed("round-unsolved", cfg.seed, r)
            else:
                logging.info(
                    "round %d: %d problems still unsolved, searched once more (search %d)", r, len(unsolved), k + 2
                )
                extra = rd.trees / f"trees_unsolved_{k + 1}.jsonl"
                extra_seed = derive_seed("round-unsolved", cfg.seed, r, k + 1)
            extra_cfg = dataclasses.replace(cfg.search, rollouts=tier_rollouts)
            _cold(policy, ppm)
            run_search(unsolved, extra, cfg=extra_cfg, run_seed=extra_seed, progress=cfg.progress_bars, **common)
            records += list(read_records(extra))
            files.append(extra)
        solved = {x["id"] for x in records if _solved(x)}
        return {
            "files": files,
            "counts": {"trees": len(records), "solved": len(solved)},
            "metrics": {"coverage": _coverage(ctx, solved)},
        }

    return ctx.stages.run(rd.trees, f"round_{r}/trees", inputs, body)


def extract_data(ctx: RoundContext, r: int, trees: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/extract`: the policy's SFT records and the PPM's preference pairs from the round's trees."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    data_dir = rd.data
    replay = cfg.evolve.sft_replay and r > 1
    inputs = {
        "trees": digest(trees),
        "margin": cfg.evolve.pair_margin,
        "per_problem": cfg.evolve.sft_per_problem,
        "replay": digest(_previous(ctx, r, "data")[1]) if replay else None,
    }
    if cfg.evolve.pair_min_edit_distance:  # only when on: workdirs made before the filter existed still resume
        inputs["min_edit_distance"] = cfg.evolve.pair_min_edit_distance

    def body() -> dict[str, Any]:
        records = []
        for name in sorted(trees["files"]):
            records += list(read_records(rd.trees / name))
        data = extract.extract_round(
            records,
            margin=cfg.evolve.pair_margin,
            min_edit_distance=cfg.evolve.pair_min_edit_distance,
            per_problem=cfg.evolve.sft_per_problem,
        )
        sft = data.sft
        if replay:  # earlier rounds' records (themselves replayed) of the problems this round did not solve
            solved = {x["id"] for x in sft}
            earlier = json.loads((_previous(ctx, r, "data")[0] / "sft.json").read_text(encoding="utf-8"))
            sft = sft + [x for x in earlier if x["id"] not in solved]
            data.stats["replayed"] = len(sft) - len(data.sft)
        paths = [data_dir / "sft.json", data_dir / "pairs.json", data_dir / "stats.json"]
        write_json(paths[0], sft, trainer_format=True)
        write_json(paths[1], data.pairs, trainer_format=True)
        write_json(paths[2], data.stats)
        return {"files": paths, "counts": {"sft": len(sft), "pairs": len(data.pairs)}, "metrics": data.stats}

    return ctx.stages.run(data_dir, f"round_{r}/extract", inputs, body)


def _train(ctx: RoundContext, r: int, kind: Kind, data: dict[str, Any], init: Base) -> dict[str, Any]:
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    stage_dir = rd.sft if kind is Kind.SFT else rd.ppm
    train_cfg = cfg.sft if kind is Kind.SFT else cfg.ppm
    source = "sft.json" if kind is Kind.SFT else "pairs.json"
    inputs = {"data": digest(data), "init": init[1], "train": to_dict(train_cfg), "kind": kind.value}

    def body() -> dict[str, Any]:
        records = json.loads((rd.data / source).read_text(encoding="utf-8"))
        out = stage_dir / ("policy" if kind is Kind.SFT else "model")
        summary = fit(
            kind,
            records,
            init_dir=init[0],
            out_dir=out,
            cfg=train_cfg,
            workdir=stage_dir / "run",
            allow_empty=True,
            progress=cfg.progress_bars,
        )
        files = sorted(p for p in out.iterdir() if p.is_file())
        return {"files": files, "counts": {"examples": int(summary["examples"])}, "metrics": summary}

    return ctx.stages.run(stage_dir, f"round_{r}/{kind.value}", inputs, body)


def train_policy(ctx: RoundContext, r: int, data: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/sft`: the round's policy, fine-tuned on its SFT records from `evolve.sft_init`."""
    return _train(ctx, r, Kind.SFT, data, _sft_init(ctx, r))


def train_ppm(ctx: RoundContext, r: int, data: dict[str, Any], sft: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/ppm`: the round's PPM, trained on its preference pairs from the round's policy."""
    return _train(ctx, r, Kind.PPM, data, (ctx.run_dir.round(r).sft / "policy", digest(sft)))


def _sft_init(ctx: RoundContext, r: int) -> Base:
    if r == 1 or ctx.cfg.evolve.sft_init is SftInit.BASE:
        return ctx.base_dir, ctx.base_digest
    stage_dir, outputs = _previous(ctx, r, "sft")
    return stage_dir / "policy", digest(outputs)


def evaluate(ctx: RoundContext, r: int, sft: dict[str, Any], ppm: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/evaluate`: the round's policy and PPM on the held-out problems (`evolve.evaluate`)."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    eval_dir = rd.eval
    problems = ctx.test[: cfg.evolve.eval_problems or None]
    full = r in cfg.evolve.full_eval_rounds
    fixed, own = full and cfg.evolve.fixed_policy_eval and r > 1, full and cfg.evolve.fixed_policy_eval and r == 1
    round1_sft = ctx.run_dir.round(1).sft
    inputs = {
        "policy": digest(sft),
        "ppm": digest(ppm),
        "problems": [p.id for p in problems],
        "evolve": {k: getattr(cfg.evolve, k) for k in ("eval_samples", "eval_temperature", "fixed_policy_eval")}
        | {"full": full},
        "search": to_dict(cfg.search),
        "fixed_policy": digest(ctx.stages.finished(round1_sft) or {}) if fixed else None,
    }

    def body() -> dict[str, Any]:
        policy_dir, ppm_dir = rd.sft / "policy", rd.ppm / "model"
        m = ctx.models
        models = evaluation.EvalModels(
            greedy_policy=lambda: m.policy(policy_dir, 0.0),
            sampling_policy=lambda: m.policy(policy_dir, cfg.evolve.eval_temperature),
            search_policy=lambda: m.policy(policy_dir, cfg.search.temperature),
            ppm=lambda: m.ppm(ppm_dir),
            fixed_search_policy=(lambda: m.policy(round1_sft / "policy", cfg.search.temperature)) if fixed else None,
            fixed_is_own=own,
        )
        counts = evaluation.evaluate(
            problems, models=models, cfg=cfg, executor=ctx.executor, grader=ctx.grader, out_dir=eval_dir,
            full=full,
        )  # fmt: skip
        files = sorted(p for p in eval_dir.glob("*.json") if p.stem in evaluation.METHODS)
        return {"files": files, "counts": {"problems": len(problems)}, "metrics": counts}

    return ctx.stages.run(eval_dir, f"round_{r}/evaluate", inputs, body)


def _covered(ctx: RoundContext, r: int, trees: dict[str, Any]) -> dict[str, bool]:
    """`{train_problem_id: solved}` from the round's tree files (the per-problem form of the coverage counts)."""
    solved = set()
    for name in trees["files"]:
        solved |= {x["id"] for x in read_records(ctx.run_dir.round(r).trees / name) if _solved(x)}
    return {p.id: p.id in solved for p in ctx.train}


def round_report(
    ctx: RoundContext, r: int, trees: dict[str, Any], data: dict[str, Any], ppm: dict[str, Any], ev: dict[str, Any]
) -> dict[str, Any]:
    """Writes round `r`'s report (`round_<r>/report/`) from its stages' outputs; returns the report's metrics.

    Besides the count tables, `per_problem` holds `{"coverage" | method: {problem_id: correct}}` (training problems
    for coverage, held-out ones for the methods) and `problem_bands` `{problem_id: band}`: the report pairs them.
    `links` names the files written next to the report (`report_assets`): the training curves and the viewer
    pages of `evolve.report_trees` problems of each of the round's tree files.
    """
    methods, rd, evolve = ev["metrics"], ctx.run_dir.round(r), ctx.cfg.evolve
    names = ("trees", "extract", "sft", "ppm", "evaluate")
    per_problem = {"coverage": _covered(ctx, r, trees), **evaluation.per_problem(ctx.run_dir.round(r).eval)}
    ids = set().union(*per_problem.values())
    bands = {p.id: str(p.extra["band"]) for p in (*ctx.train, *ctx.test) if p.id in ids and p.extra.get("band")}
    metrics = {
        "round": r,
        "coverage": trees["metrics"]["coverage"],
        "policy_greedy": methods.get("greedy"),
        "ppm_fixed_policy": methods.get("ppm_fixed_policy"),
        "system": methods.get("mcts_ppm"),
        "methods": {"samples": ctx.cfg.evolve.eval_samples, **{k: methods.get(k) for k in evaluation.METHODS[:4]}},
        "ppm_pair_accuracy": ppm["metrics"].get("eval_accuracy"),
        "data": {"trees": trees["counts"]["trees"], "sft": data["counts"]["sft"], "pairs": data["counts"]["pairs"]},
        "seconds": {n: ctx.stages.timings.get(f"round_{r}/{n}", 0.0) for n in names},
        "per_problem": per_problem,
        "problem_bands": bands,
    }
    tree_files = [rd.trees / name for name in sorted(trees["files"])] + sorted(rd.eval.glob("*.trees.jsonl"))
    metrics["links"] = report_assets.write_round_assets(
        rd, r, trees=tree_files, margin=evolve.pair_margin, per_problem=evolve.sft_per_problem,
        sample=evolve.report_trees,
    )  # fmt: skip
    report.write_round_report(rd.report, metrics)
    system = (metrics.get("system") or {}).get("all")
    logging.info("round %d done: MCTS+PPM held-out %s; report in %s", r, system, rd.report)
    return metrics


def cumulative_report(run_dir: RunDir) -> None:
    """Writes `<workdir>/report/` over every round of the workdir that has a report (module docstring)."""
    found = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(run_dir.root.glob("round_*/report/round_*.json"))
    ]
    cumulative = report.write_cumulative_report(run_dir.root / "report", sorted(found, key=lambda m: m["round"]))
    logging.info("report: %s", {k: str(v) for k, v in cumulative.items()})
