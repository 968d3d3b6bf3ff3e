"""What the stages of a round share (`RoundContext`), and how a stage finds round r - 1's outputs.

with on_mesh(mesh), round_context(cfg, run_dir, splits, problems_digest, stages, base, mesh) as ctx:
    ...  # rstar_jax.evolve.rounds' stages, each given ctx and the round number
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jax.sharding import Mesh

from rstar_jax.config import RunConfig
from rstar_jax.data import Problem
from rstar_jax.devices import process_mesh
from rstar_jax.evolve.inputs import Splits
from rstar_jax.evolve.model_cache import ModelCache
from rstar_jax.evolve.stages import Stages
from rstar_jax.execution import Executor
from rstar_jax.search import ProjectGrader
from rstar_jax.search.driver import Runner
from rstar_jax.search.grader import Grader
from rstar_jax.workdir import RunDir

__all__ = ["Base", "RoundContext", "previous", "round_context"]


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
    mesh: Mesh

    @property
    def search_mesh(self) -> Mesh:
        """Where this process's searches run and their models load: its own devices of the run's mesh (the whole
        mesh for one process). Processes search different problems, so no search may span another's devices."""
        return process_mesh(self.mesh)


Base = tuple[Path, str]  # a model to start from: its HF directory and its fingerprint


@contextlib.contextmanager
def round_context(
    cfg: RunConfig, run_dir: RunDir, splits: Splits, problems_digest: str, stages: Stages, base: Base, mesh: Mesh
) -> Iterator[RoundContext]:
    """What the rounds share, with the sandboxed executor's worker pool open until the context exits; `mesh`: the
    device mesh of the training stages (`rstar_jax.devices.run_mesh`); the models of the searches load on this
    process's part of it (`RoundContext.search_mesh`)."""
    executor = Executor.from_config(cfg.execution)
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
            models=ModelCache(cfg, process_mesh(mesh)),
            mesh=mesh,
        )


def previous(ctx: RoundContext, r: int, stage: str) -> tuple[Path, dict[str, Any]]:
    """A finished stage of round r - 1 (its directory and outputs), or a clear error when it is missing."""
    stage_dir = getattr(ctx.run_dir.round(r - 1), stage)
    outputs = ctx.stages.finished(stage_dir)
    if outputs is None:
        raise FileNotFoundError(
            f"round {r} needs round {r - 1}'s {stage} stage, but {stage_dir / 'manifest.json'} is missing: run round "
            f"{r - 1} first with the same config.workdir ({ctx.run_dir.root})"
        )
    return stage_dir, outputs
