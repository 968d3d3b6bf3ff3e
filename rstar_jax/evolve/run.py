"""The self-evolution loop: the base model, then rounds `first_round..last_round`, then the cumulative report.

    summaries = run_rounds(cfg, run_dir, train, test, problems_digest)

The base model: on the toy domain the committed toy base (`rstar_jax/toy/base`, checked against the sha256 of its
manifest), or with `model.base=scratch` a stage of its own (`<workdir>/base/`): a BPE tokenizer trained on the
training split and a from-scratch tiny decoder; on real data `model.base` (an HF directory, fingerprinted by
its file names, sizes and modification times rather than hashed: checkpoints are tens of GB). Each round writes
its report to `round_<r>/report/`; the cumulative report (`<workdir>/report/`) covers every round of the
workdir that has one, so `configs/round2.py` run after `configs/round1.py` on the same workdir reports both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax.config import SCRATCH_BASE, RunConfig, to_dict
from rstar_jax.data import Problem
from rstar_jax.evolve import report
from rstar_jax.evolve.models import ModelCache, write_toy_base
from rstar_jax.evolve.rounds import RoundContext, run_round
from rstar_jax.evolve.stages import Stages, digest
from rstar_jax.execution import Executor
from rstar_jax.search import ProjectGrader
from rstar_jax.workdir import LOG_FILE_ONLY, RunDir

__all__ = ["run_rounds"]


def _base(
    cfg: RunConfig, run_dir: RunDir, splits: tuple[list[Problem], list[Problem]], stages: Stages, digest_in: str
) -> tuple[Path, str]:
    """The base model's HF directory and fingerprint (module docstring)."""
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
    stage_dir = run_dir.root / "base"
    model_dir = stage_dir / "model"
    tiny = {k: getattr(cfg.model, k) for k in cfg.model.__slots__ if k.startswith("tiny_")}
    inputs = {"problems": digest_in, "tiny": tiny, "seed": cfg.seed}
    if cfg.model.tiny_read_per_band:
        inputs["pretrain"] = to_dict(cfg.pretrain)

    def body() -> dict[str, Any]:
        files, metrics = write_toy_base(cfg, *splits, model_dir, stage_dir / "pretrain")
        counts = {"train_problems": len(splits[0]), "reading_documents": int(metrics.pop("documents", 0))}
        return {"files": files, "counts": counts, "metrics": metrics}

    outputs = stages.run(stage_dir, "base", inputs, body)
    return model_dir, digest(outputs)


def _all_round_reports(run_dir: RunDir) -> list[dict[str, Any]]:
    found = []
    for path in sorted(run_dir.root.glob("round_*/report/round_*.json")):
        found.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m["round"])


def run_rounds(
    cfg: RunConfig, run_dir: RunDir, train: list[Problem], test: list[Problem], problems_digest: str
) -> list[dict[str, Any]]:
    """Runs (or resumes) the configured rounds; returns each round's metrics (the report's input)."""
    stages = Stages(force=cfg.evolve.force)
    base_dir, base_digest = _base(cfg, run_dir, (train, test), stages, problems_digest)
    ex = cfg.execution
    executor = Executor(
        timeout_s=ex.timeout_s,
        memory_mb=ex.memory_mb,
        max_output_chars=ex.max_output_chars,
        workers=ex.workers or None,
        round_floats=ex.round_floats,
    )
    out = []
    with executor:
        ctx = RoundContext(
            cfg=cfg,
            run_dir=run_dir,
            train=train,
            test=test,
            problems_digest=problems_digest,
            base_dir=base_dir,
            base_digest=base_digest,
            executor=executor,
            grader=ProjectGrader(cfg.grading.timeout_s, cfg.grading.percent_as_fraction),
            stages=stages,
            models=ModelCache(cfg),
        )
        for r in range(cfg.first_round, cfg.last_round + 1):
            metrics = run_round(ctx, r)
            report.write_round_report(run_dir.round(r).report, metrics)
            system = (metrics.get("system") or {}).get("all")
            logging.info("round %d done: MCTS+PPM held-out %s; report in %s", r, system, run_dir.round(r).report)
            out.append(metrics)
            rd = run_dir.round(r)
            ctx.models.retain([rd.sft / "policy", rd.ppm / "model", run_dir.round(1).sft / "policy"])
    cumulative = report.write_cumulative_report(run_dir.root / "report", _all_round_reports(run_dir))
    logging.info("report: %s", {k: str(v) for k, v in cumulative.items()})
    if stages.redone:
        logging.warning("stages redone because their inputs or files changed: %s", stages.redone)
    logging.info("config: %s", json.dumps(to_dict(cfg.evolve)), extra=LOG_FILE_ONLY)
    return out
