"""What `launch.evolve` runs: every stage of a run, in order, each resumable from the workdir.

    summary = evolve(cfg)  # cfg: a validated RunConfig

1. `preflight` (`evolve.inputs`) checks what the config points at, writing nothing; then the run takes the
   workdir's lock (`WorkdirLock`: one run per workdir).
2. `problems`, `benchmarks` (`evolve.inputs`): the training and held-out problems, and the evaluation benchmarks.
3. `verify` (`evolve.verify`, toy domain only): every problem's intended computation written as rStar code steps,
   executed in the sandboxed executor and graded against the gold answer: an end-to-end check of data, executor
   and grader before any model time is spent.
4. `base`: the base model (below), then the self-evolution rounds `first_round..last_round` (`evolve.rounds`):
   trees, extraction, policy SFT, PPM, evaluation and report per round, then the cumulative report. The rounds
   run under `devices.on_mesh` (`jax.set_mesh` and the logical-axis rules) of the config's `mesh` section: models
   load sharded by their logical axes, KV pools and batches follow theirs, SFT and PPM train on the same mesh.
A summary goes to `<workdir>/report.json`; the rounds' report to `<workdir>/report/report.md`.

With several processes (`jax.distributed`, `devices.initialize`) every process runs `evolve` alike: process 0
holds the workdir's lock and writes every shared file (manifests, problems, extracted data, exported models,
evaluations, reports, `report.json`); the trees, training and evaluate stages run on every process
(`evolve.stages`; trees and evaluation split the problems), the others on process 0 while the rest wait at a
barrier (`processes`). Processes other than 0 log to
`logs/evolve.process-<i>.log`.

`ablate(cfg, r)` (`launch.ablate`) opens a workdir the same way (preflight, lock, problems, base, mesh, round
context) and runs paper Table 8 on its finished round r (`evolve/ablation.py`).

The base model: on the toy domain the committed toy base (`rstar_jax/toy/base`, checked against the sha256 of its
manifest), or with `model.base=scratch` a stage of its own (`<workdir>/base/`): a BPE tokenizer trained on the
training split and a from-scratch tiny decoder; on real data `model.base` (an HF directory, fingerprinted by
its file names, sizes and modification times rather than hashed: checkpoints are tens of GB).

A run refused by a stage (`StageRefused`) leaves the workdir as it found it (its `config.json` is put back and the
directories it made are removed); only the log file records the refusal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
from absl import logging

from rstar_jax import processes
from rstar_jax.config import SCRATCH_BASE, RunConfig, to_dict
from rstar_jax.data import ProblemSet
from rstar_jax.evolve.inputs import Splits, check_benchmarks, preflight, preflight_ablation, prepare_problems
from rstar_jax.evolve.stages import StageRefused, Stages, digest, train_inputs
from rstar_jax.evolve.verify import verify_toy_solutions
from rstar_jax.workdir import (
    LOG_FILE_ONLY,
    RunDir,
    WorkdirLock,
    atomic_write_bytes,
    setup_logging,
    write_json,
)

__all__ = ["ablate", "ablate_checked", "evolve", "evolve_checked"]

PROGRAM = "evolve"  # the log file's name: <workdir>/logs/evolve.log


def evolve(cfg: RunConfig) -> dict[str, Any]:
    """Runs (or resumes) every stage for a validated config; returns (and writes) the run summary.

    Raises `ConfigError` (preflight), `WorkdirBusy` (another run holds the workdir) or `StageRefused` before
    changing the workdir."""
    return evolve_checked(cfg, preflight(cfg))


def evolve_checked(cfg: RunConfig, loaded: ProblemSet | None) -> dict[str, Any]:
    """`evolve` once `preflight(cfg)` has returned `loaded`: `launch.evolve` runs the preflight before it imports
    jax (about 3 s), so that a bad file or directory is refused at once."""
    with _claimed_workdir(cfg) as run_dir:
        stages = Stages(force=cfg.evolve.force)
        splits, problems = prepare_problems(cfg, run_dir, stages, loaded)
        if processes.is_leader():
            write_json(run_dir.root / "config.json", to_dict(cfg))
        summary: dict[str, Any] = {
            "workdir": str(run_dir.root),
            "problems": {"train": len(splits.train), "test": len(splits.test)}
            | {k: v for k, v in problems["counts"].items() if k == "dropped_overlap"},
            "benchmarks": check_benchmarks(cfg),
        }
        if not cfg.data.train_file and processes.is_leader():
            summary["verify"] = verify_toy_solutions(cfg, splits.train + splits.test)
        if cfg.run_rounds:
            from rstar_jax.devices import check_fits, on_mesh, run_mesh  # models, devices and the sampling engine
            from rstar_jax.evolve import rounds  # load only when rounds run

            mesh = run_mesh(cfg.mesh)  # every stage of the rounds runs on it (1 x 1 x 1: one device)
            check_fits(cfg, tuple(mesh.shape[k] for k in ("data", "fsdp", "tensor")))
            problems_digest = digest(problems)
            base = _base_model(cfg, run_dir, splits, stages, problems_digest, mesh)
            summary["rounds"] = {}
            with (
                on_mesh(mesh),
                rounds.round_context(cfg, run_dir, splits, problems_digest, stages, base, mesh) as ctx,
            ):
                for r in range(cfg.first_round, cfg.last_round + 1):
                    logging.info("round %d: start", r)
                    trees = rounds.search_trees(ctx, r)
                    data = rounds.extract_data(ctx, r, trees)
                    sft = rounds.train_policy(ctx, r, data)
                    ppm = rounds.train_ppm(ctx, r, data, sft)
                    ev = rounds.evaluate(ctx, r, sft, ppm)
                    if processes.is_leader():
                        metrics = rounds.round_report(ctx, r, trees, data, ppm, ev)
                        summary["rounds"][str(r)] = {"system": metrics["system"], "coverage": metrics["coverage"]}
                    rd = run_dir.round(r)  # the models the next round may use stay loaded
                    ctx.models.retain([rd.sft / "policy", rd.ppm / "model", run_dir.round(1).sft / "policy"])
            if processes.is_leader():
                rounds.cumulative_report(run_dir)
            if stages.redone:
                logging.warning("stages redone because their inputs or files changed: %s", stages.redone)
            logging.info("config: %s", json.dumps(to_dict(cfg.evolve)), extra=LOG_FILE_ONLY)
            summary["report"] = str(run_dir.root / "report" / "report.md")
        if processes.is_leader():
            write_json(run_dir.root / "report.json", summary)
        processes.barrier("evolve:summary")
        summary = json.loads((run_dir.root / "report.json").read_text(encoding="utf-8"))  # process 0's, on every one
        logging.info("summary: %s", json.dumps(summary), extra=LOG_FILE_ONLY)
    return summary


def ablate(cfg: RunConfig, r: int) -> dict[str, Any]:
    """What `launch.ablate` runs: paper Table 8 on finished round `r` of the workdir (`evolve/ablation.py`), under the
    same preflight, lock, problems stage, mesh and round context as `evolve`; returns the ablation's outputs."""
    return ablate_checked(cfg, r, preflight_ablation(cfg, r))


def ablate_checked(cfg: RunConfig, r: int, loaded: ProblemSet | None) -> dict[str, Any]:
    """`ablate` once `preflight_ablation(cfg, r)` has returned `loaded` (as `evolve_checked`)."""
    from rstar_jax.devices import on_mesh, run_mesh
    from rstar_jax.evolve import ablation, rounds

    with _claimed_workdir(cfg) as run_dir:
        stages = Stages(force=cfg.evolve.force)
        splits, problems = prepare_problems(cfg, run_dir, stages, loaded)
        mesh = run_mesh(cfg.mesh)
        problems_digest = digest(problems)
        base = _base_model(cfg, run_dir, splits, stages, problems_digest, mesh)
        with on_mesh(mesh), rounds.round_context(cfg, run_dir, splits, problems_digest, stages, base, mesh) as ctx:
            return ablation.reward_ablation(ctx, r)


@contextlib.contextmanager
def _claimed_workdir(cfg: RunConfig) -> Iterator[RunDir]:
    """The workdir, locked, with its directories and log file; a refused run leaves it as it was (module docstring)."""
    root = Path(cfg.workdir).expanduser().resolve()
    rounds = range(cfg.first_round, cfg.last_round + 1)
    made = RunDir(root).missing_dirs(rounds)
    with WorkdirLock(root) if processes.is_leader() else contextlib.nullcontext():  # the run's, held by process 0
        run_dir = RunDir.create(root, rounds)
        program = PROGRAM if processes.is_leader() else f"{PROGRAM}.process-{jax.process_index():05d}"
        log_path = setup_logging(run_dir.logs, program)
        logging.info("workdir %s, log %s", run_dir.root, log_path)
        config_path = run_dir.root / "config.json"
        previous_config = config_path.read_bytes() if config_path.is_file() else None
        try:
            yield run_dir
        except StageRefused:
            if not processes.is_leader():  # every process is refused alike; process 0 puts the workdir back
                raise
            if previous_config is None:
                config_path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(config_path, previous_config)
            for d in reversed(made):
                with contextlib.suppress(OSError):  # not empty (the log directory, or what a stage wrote): kept
                    d.rmdir()
            raise


def _base_model(
    cfg: RunConfig, run_dir: RunDir, splits: Splits, stages: Stages, problems_digest: str, mesh: Any
) -> tuple[Path, str]:
    """Stage `base` (with `model.base=scratch`, pretrained on `mesh` by every process), or the given base: its HF
    directory and fingerprint (module docstring)."""
    if not cfg.model.base and not cfg.data.train_file:
        from rstar_jax.toy.base_build import check_base
        from rstar_jax.toy.base_corpus import BASE_DIR

        return BASE_DIR, digest({"counts": {"toy_base": check_base(BASE_DIR)["sha256"]}})
    if cfg.model.base != SCRATCH_BASE:
        base = Path(cfg.model.base).expanduser().resolve()
        if not (base / "config.json").is_file():
            raise FileNotFoundError(f"config.model.base = {cfg.model.base!r}: no config.json in {base}")
        files = {p.name: [p.stat().st_size, int(p.stat().st_mtime)] for p in sorted(base.iterdir()) if p.is_file()}
        return base, digest({"counts": {"path": str(base), "files": files}})
    from rstar_jax.toy.tiny_model import write_toy_base

    stage_dir = run_dir.root / "base"
    model_dir = stage_dir / "model"
    inputs = {"problems": problems_digest, "toy_model": to_dict(cfg.toy_model), "seed": cfg.seed}
    if cfg.toy_model.read_per_band:
        inputs["pretrain"] = train_inputs(cfg.pretrain)

    def body() -> dict[str, Any]:
        files, metrics = write_toy_base(cfg, splits.train, splits.test, model_dir, stage_dir / "pretrain", mesh)
        counts = {"train_problems": len(splits.train), "reading_documents": int(metrics.pop("documents", 0))}
        return {"files": files, "counts": counts, "metrics": metrics}

    outputs = stages.run(stage_dir, "base", inputs, body, every_process=True)
    return model_dir, digest(outputs)
