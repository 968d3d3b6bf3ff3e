"""The stages of a self-evolution round: trees -> extract -> policy SFT -> PPM -> evaluate -> report, each
resumable; `evolve.run.evolve` calls them in that order, after the base model's stage.

    with round_context(cfg, run_dir, splits, problems_digest, stages, base) as ctx:
        trees = search_trees(ctx, r); data = extract_data(ctx, r, trees)
        sft = train_policy(ctx, r, data); ppm = train_ppm(ctx, r, data, sft)
        metrics = round_report(ctx, r, trees, data, ppm, evaluate(ctx, r, sft, ppm))
    cumulative_report(run_dir)

Layout of `<workdir>/round_<r>/` (each stage directory holds its `manifest.json`, see `stages`):

    trees/     trees.jsonl: one MCTS tree per training problem; round 4 adds trees_unsolved.jsonl (and
               trees_unsolved_<k>.jsonl for the k-th search of `evolve.unsolved_more_rollouts`); each merged from
               the processes' shards, trees.shard-<p>-of-<n>.jsonl (`round_trees`; one process: one shard)
    data/      sft.json, pairs.json, stats.json: the extracted training data (rstar_reference.md Part A); with
               `evolve.sft_replay`, sft.json also keeps round r-1's records of problems round r did not solve;
               orm.json (correct x wrong full-trajectory pairs) and pqm.json (every answer-reaching node's Q): the
               data of the paper's Table 8 reward models, trained only by `launch.ablate` (`evolve/ablation.py`)
    sft/       policy/ (HF *ForCausalLM), run/ (checkpoints, metrics.jsonl, TensorBoard events)
    ppm/       model/ (HF *ForSequenceClassification with the value head), run/
    eval/      one JSON of predictions per method, MCTS tree files (merged from the processes' part.shard-* dirs)
    report/    round_<r>.{md,json,png}, round_<r>_training.png (loss curves), tree viewer pages (*.html)

The trees stage and who searches in which round: `round_trees`; what the stages share: `context`. The cumulative
report (`<workdir>/report/`) covers every round of the workdir that has one, so `configs/round2.py` run after
`configs/round1.py` on the same workdir reports both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax import extract, processes
from rstar_jax.config import SftInit, to_dict
from rstar_jax.devices import on_mesh
from rstar_jax.evolve import evaluate as evaluation
from rstar_jax.evolve import report, report_assets, round_trees
from rstar_jax.evolve.context import Base, RoundContext, previous, round_context
from rstar_jax.evolve.round_trees import search_trees
from rstar_jax.evolve.stages import digest, train_inputs
from rstar_jax.search import read_records
from rstar_jax.train import Kind, check_records, fit
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


def extract_data(ctx: RoundContext, r: int, trees: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/extract`: the policy's SFT records and the PPM's preference pairs from the round's trees."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    data_dir = rd.data
    replay = cfg.evolve.sft_replay and r > 1
    inputs = {
        "trees": digest(trees),
        "margin": cfg.evolve.pair_margin,
        "per_problem": cfg.evolve.sft_per_problem,
        "replay": digest(previous(ctx, r, "data")[1]) if replay else None,
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
            earlier = json.loads((previous(ctx, r, "data")[0] / "sft.json").read_text(encoding="utf-8"))
            sft = sft + [x for x in earlier if x["id"] not in solved]
            data.stats["replayed"] = len(sft) - len(data.sft)
        orm, pqm = extract.reward_model_data(records)
        files = {"sft": sft, "pairs": data.pairs, "orm": orm, "pqm": pqm}
        for name, rows in files.items():
            write_json(data_dir / f"{name}.json", rows, trainer_format=True)
        write_json(data_dir / "stats.json", data.stats)
        paths = [data_dir / f"{name}.json" for name in (*files, "stats")]
        return {"files": paths, "counts": {k: len(v) for k, v in files.items()}, "metrics": data.stats}

    return ctx.stages.run(data_dir, f"round_{r}/extract", inputs, body)


_SOURCES = {Kind.SFT: "sft.json", Kind.PPM: "pairs.json", Kind.ORM: "orm.json", Kind.PQM: "pqm.json"}
"""The data file in `round_<r>/data/` each kind trains on; every kind but SFT trains with section `ppm`."""


def _train(ctx: RoundContext, r: int, kind: Kind, data: dict[str, Any], init: Base) -> dict[str, Any]:
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    stage_dir = rd.root / kind.value
    train_cfg = cfg.sft if kind is Kind.SFT else cfg.ppm
    source = rd.data / _SOURCES[kind]
    inputs = {"data": digest(data), "init": init[1], "train": train_inputs(train_cfg), "kind": kind.value}

    def body() -> dict[str, Any]:
        if not source.is_file():
            raise FileNotFoundError(
                f"{source}: no {kind.value} training data; round {r}'s extract stage writes it (a workdir extracted "
                "before the ORM / PQM data existed lacks orm.json and pqm.json)"
            )
        records = json.loads(source.read_text(encoding="utf-8"))
        check_records(kind.value, records, str(source), allow_empty=True)  # a record of the wrong shape is named
        out = stage_dir / ("policy" if kind is Kind.SFT else "model")
        summary = fit(
            kind,
            records,
            init_dir=init[0],
            out_dir=out,
            cfg=train_cfg,
            workdir=stage_dir / "run",
            mesh=ctx.mesh,
            allow_empty=True,
            progress=cfg.progress_bars,
        )
        files = sorted(p for p in out.iterdir() if p.is_file())
        return {"files": files, "counts": {"examples": int(summary["examples"])}, "metrics": summary}

    return ctx.stages.run(stage_dir, f"round_{r}/{kind.value}", inputs, body, every_process=True)


def train_policy(ctx: RoundContext, r: int, data: dict[str, Any]) -> dict[str, Any]:
    """Stage `round_<r>/sft`: the round's policy, fine-tuned on its SFT records from `evolve.sft_init`."""
    return _train(ctx, r, Kind.SFT, data, _sft_init(ctx, r))


def train_ppm(
    ctx: RoundContext, r: int, data: dict[str, Any], sft: dict[str, Any], kind: Kind = Kind.PPM
) -> dict[str, Any]:
    """Stage `round_<r>/ppm`: the round's PPM, trained on its preference pairs from the round's policy. With `kind`
    ORM or PQM (`evolve/ablation.py`), stage `round_<r>/orm` or `/pqm`: that reward model, on `orm.json` or
    `pqm.json`, from the same policy with the same `ppm` settings."""
    return _train(ctx, r, kind, data, (ctx.run_dir.round(r).sft / "policy", digest(sft)))


def _sft_init(ctx: RoundContext, r: int) -> Base:
    if r == 1 or ctx.cfg.evolve.sft_init is SftInit.BASE:
        return ctx.base_dir, ctx.base_digest
    stage_dir, outputs = previous(ctx, r, "sft")
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
        with on_mesh(ctx.search_mesh):  # each process its share of the problems, on its own devices
            evaluation.evaluate(
                processes.share(problems), models=models, cfg=cfg, executor=ctx.executor, grader=ctx.grader,
                out_dir=processes.shard_path(eval_dir / "part"), full=full,
            )  # fmt: skip
        processes.barrier(f"{eval_dir}:evaluated")
        if not processes.is_leader():
            return {}
        counts = evaluation.merge_parts(problems, processes.shard_paths(eval_dir / "part"), eval_dir)
        files = sorted(p for p in eval_dir.glob("*.json") if p.stem in evaluation.METHODS)
        return {"files": files, "counts": {"problems": len(problems)}, "metrics": counts}

    return ctx.stages.run(eval_dir, f"round_{r}/evaluate", inputs, body, every_process=True)


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
    per_problem = {"coverage": round_trees.covered(ctx, r, trees), **evaluation.per_problem(ctx.run_dir.round(r).eval)}
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
    written = _written_report(rd.report, metrics)
    if written is not None:  # a rerun of a finished round: the same figures, files in place
        return written
    tree_files = [rd.trees / name for name in sorted(trees["files"])] + sorted(rd.eval.glob("*.trees.jsonl"))
    metrics["links"] = report_assets.write_round_assets(
        rd, r, trees=tree_files, margin=evolve.pair_margin, per_problem=evolve.sft_per_problem,
        sample=evolve.report_trees,
    )  # fmt: skip
    report.write_round_report(rd.report, metrics)
    system = (metrics.get("system") or {}).get("all")
    logging.info("round %d done: MCTS+PPM held-out %s; report in %s", r, system, rd.report)
    return metrics


def _written_report(report_dir: Path, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The round report written earlier (`round_<r>.json` with its links) when it shows exactly `metrics` (links
    aside) and all of its files are there, so that a rerun of a finished round does not draw it again; else None."""
    r = metrics["round"]
    path = report_dir / f"round_{r}.json"
    if not path.is_file():
        return None
    written = json.loads(path.read_text(encoding="utf-8"))
    links = written.pop("links", None)
    if not isinstance(links, dict) or written != json.loads(json.dumps(metrics)):
        return None
    files = [f"round_{r}.md", f"round_{r}.png", *links.values()]
    return written | {"links": links} if all((report_dir / f).is_file() for f in files) else None


def cumulative_report(run_dir: RunDir) -> None:
    """Writes `<workdir>/report/` over every round of the workdir that has a report (module docstring)."""
    found = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(run_dir.root.glob("round_*/report/round_*.json"))
    ]
    cumulative = report.write_cumulative_report(run_dir.root / "report", sorted(found, key=lambda m: m["round"]))
    logging.info("report: %s", {k: str(v) for k, v in cumulative.items()})
