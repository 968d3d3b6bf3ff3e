"""Stage bookkeeping: every stage of a round records a manifest, and a rerun resumes at the first unfinished one.

    stages = Stages(force=cfg.evolve.force)
    out = stages.run(round_dir / "trees", "round_2/trees", inputs={...}, body=make_trees)

A stage owns one directory. `run`:
1. with a `manifest.json` whose inputs equal the current ones and whose output files still match their
   checksums: the stage is finished; its recorded outputs are returned and nothing is redone;
2. with a manifest (or a `started.json` of an unfinished attempt) made from OTHER inputs: `StageRefused`, naming
   what changed, unless `force`, which clears the directory and reruns the stage. An unfinished attempt that left
   no output (it failed before its first step: no non-empty file besides `started.json`) or that diverged (a
   non-finite training step, recorded in `started.json`) holds nothing worth keeping: it is cleared and the stage
   runs with the new inputs, without `force`;
3. otherwise it writes `started.json` (inputs, attempt number, time) and calls `body()`. Bodies are resumable
   themselves (the search appends finished batches, training restores its latest checkpoint), so a killed
   attempt continues where it stopped. `body()` returns `{"files": [paths], "counts": {...}, "metrics": {...}}`;
   the manifest (inputs, output files with sha256 and size, counts, metrics, attempts, seconds of the last
   attempt) is written last, atomically: it is the commit marker.

With several processes (`jax.distributed`) every process calls `run` for every stage in the same order; process 0
alone writes `started.json`, clears directories and writes the manifest, with barriers between (`processes`).
`body` runs on process 0 only (problems, extraction), or with `every_process` on all of them (training on the
run's mesh; the trees and evaluate stages, each process taking its share of the problems); the others then read
the outputs from the manifest process 0 wrote.

A training stage whose loss or gradient turns non-finite raises `StageDiverged`, naming the stage, the step and
the config key to lower (`config.sft.learning_rate` for `round_<r>/sft`); non-finite parameters are never saved
(`Checkpointer.save` refuses them), so a rerun never resumes from a diverged step.

`digest(outputs)` fingerprints a finished stage; downstream stages put it in their inputs, so retraining a policy
invalidates the trees searched with the old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax.config import RunConfig, TrainConfig, to_dict
from rstar_jax.workdir import file_sha256, write_json

__all__ = [
    "StageDiverged",
    "StageOutputs",
    "StageRefused",
    "Stages",
    "changed_files",
    "diff_inputs",
    "digest",
    "plain_inputs",
    "train_inputs",
]

StageOutputs = dict[str, Any]
MANIFEST = "manifest.json"
STARTED = "started.json"


class StageRefused(RuntimeError):
    """A finished (or partly done) stage was made from other inputs; rerun with `--config.evolve.force=true`."""


class StageDiverged(FloatingPointError):
    """A training stage hit a non-finite loss, gradient or parameter; the message names the key to lower."""


def _learning_rate_key(name: str) -> str:
    """The config key of the learning rate behind stage `name` (`round_2/ppm` -> `config.ppm.learning_rate`)."""
    section = name.rsplit("/", 1)[-1]
    section = {"base": "pretrain", "orm": "ppm", "pqm": "ppm"}.get(section, section)  # ORM / PQM train with `ppm`
    hints = typing.get_type_hints(RunConfig)
    train_sections = [f.name for f in dataclasses.fields(RunConfig) if hints[f.name] is TrainConfig]
    if section in train_sections:
        return f"config.{section}.learning_rate"
    return " or ".join(f"config.{s}.learning_rate" for s in train_sections)


def _did_work(stage_dir: Path) -> bool:
    """Whether an unfinished attempt left any output: a non-empty file other than `started.json`."""
    return any(p.is_file() and p.name != STARTED and p.stat().st_size > 0 for p in stage_dir.rglob("*"))


def changed_files(stage_dir: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """The output files of a stage's manifest (`outputs["files"]`: relative path -> sha256) that are missing or no
    longer hold what the stage wrote."""
    bad = []
    for rel, meta in files.items():
        path = stage_dir / rel
        if not path.is_file() or file_sha256(path) != meta["sha256"]:
            bad.append(rel)
    return bad


def diff_inputs(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Readable differences between two JSON-like values: `["search.rollouts: 8 -> 16", ...]`."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in diff_inputs(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)]
    return [] if old == new else [f"{prefix or '<root>'}: {old!r} -> {new!r}"]


def digest(outputs: StageOutputs) -> str:
    """A fingerprint of a finished stage's outputs (file checksums and counts)."""
    payload = json.dumps({"files": outputs.get("files", {}), "counts": outputs.get("counts", {})}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_inputs(cfg: TrainConfig) -> dict[str, Any]:
    """A training section as a stage's inputs: every setting that changes what is trained; `remat` (the same
    values, recomputed) is left out, so switching it on resumes a finished or half-done stage."""
    return {k: v for k, v in to_dict(cfg).items() if k != "remat"}


def plain_inputs(value: Any) -> Any:
    """Inputs as they will read back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(value, sort_keys=True))


class Stages:
    """Runs stages with manifests (module docstring). `timings` collects each stage's seconds by name."""

    def __init__(self, *, force: bool = False):
        self.force = force
        self.timings: dict[str, float] = {}
        self.redone: list[str] = []

    def finished(self, stage_dir: Path) -> StageOutputs | None:
        """The recorded outputs of a finished stage (manifest present), without checking inputs."""
        path = Path(stage_dir) / MANIFEST
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))["outputs"]

    def _intact(self, stage_dir: Path, files: dict[str, dict[str, Any]]) -> list[str]:
        return changed_files(stage_dir, files)

    def _clear(self, stage_dir: Path, why: str) -> None:
        logging.warning("%s: %s; clearing the stage and running it again", stage_dir, why)
        shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True, exist_ok=True)

    def _check(self, stage_dir: Path, name: str, inputs: dict[str, Any]) -> tuple[StageOutputs | None, str]:
        """Reads the stage's state, writing nothing: (the finished outputs, '') or (None, why to clear it or '')."""
        manifest_path, started_path = stage_dir / MANIFEST, stage_dir / STARTED
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            changed = diff_inputs(manifest["inputs"], inputs)
            if changed and not self.force:
                raise StageRefused(
                    f"{manifest_path}: stage {name} finished with other inputs ({'; '.join(changed)}); use a new "
                    "config.workdir, or --config.evolve.force=true to redo it and every stage after it"
                )
            bad = [] if changed else self._intact(stage_dir, manifest["outputs"]["files"])
            if not changed and not bad:
                logging.info("%s: finished earlier (%s), skipping", name, manifest["outputs"].get("counts", {}))
                self.timings[name] = float(manifest.get("seconds", 0.0))
                return manifest["outputs"], ""
            return None, f"inputs changed ({'; '.join(changed)})" if changed else f"files changed: {bad}"
        if started_path.exists():
            started = json.loads(started_path.read_text(encoding="utf-8"))
            changed = diff_inputs(started["inputs"], inputs)
            discardable = started.get("diverged") or not _did_work(stage_dir)
            if changed and not self.force and not discardable:
                raise StageRefused(
                    f"{started_path}: an unfinished attempt of stage {name} used other inputs ({'; '.join(changed)});"
                    " use a new config.workdir, or --config.evolve.force=true to discard it"
                )
            if changed:
                why = "diverged" if started.get("diverged") else "left no output" if discardable else "was forced"
                return None, f"the unfinished attempt {why}; inputs changed ({'; '.join(changed)})"
        return None, ""

    def run(
        self,
        stage_dir: Path,
        name: str,
        inputs: dict[str, Any],
        body: Callable[[], StageOutputs],
        *,
        every_process: bool = False,
    ) -> StageOutputs:
        """Runs (or skips, or resumes) one stage; returns its outputs (module docstring).

        With several processes, every process reads the stage's state, then process 0 alone clears the directory,
        writes `started.json` and the manifest; `body` runs on process 0 only, or on every process with
        `every_process` (training on the run's mesh, the search's shares); the others wait at a barrier after it
        and return the outputs process 0 recorded."""
        from rstar_jax import processes  # jax loads here, not at import: `evolve.inputs.preflight` runs without it

        stage_dir = Path(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        inputs = plain_inputs(inputs)
        manifest_path, started_path = stage_dir / MANIFEST, stage_dir / STARTED
        finished, clear = self._check(stage_dir, name, inputs)
        previous = None if clear or not started_path.exists() else json.loads(started_path.read_text("utf-8"))
        processes.barrier(f"{name}:checked")  # nobody reads the state after process 0 starts changing it
        if finished is not None:
            return finished
        attempt = previous["attempt"] + 1 if previous else 1
        if previous:
            logging.info("%s: resuming an unfinished attempt (attempt %d)", name, attempt)
        started = {"inputs": inputs, "attempt": attempt, "started_at": time.time()}
        if clear:
            self.redone.append(str(stage_dir))
        if processes.is_leader():
            if clear:
                self._clear(stage_dir, clear)
            write_json(started_path, started)
        processes.barrier(f"{name}:started")
        start = time.perf_counter()
        result: StageOutputs = {}
        try:
            if every_process or processes.is_leader():
                result = body()
        except FloatingPointError as err:  # train.NonFiniteError; Checkpointer.save's refusal of non-finite params
            if processes.is_leader():
                write_json(started_path, started | {"diverged": str(err)})
            raise StageDiverged(
                f"stage {name} diverged: {err}; lower {_learning_rate_key(name)} and rerun (the diverged attempt "
                "is discarded, no force needed)"
            ) from err
        seconds = time.perf_counter() - start
        if processes.is_leader():
            files = {}
            for path in result.get("files", []):
                path = Path(path)
                files[str(path.relative_to(stage_dir))] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
            outputs = {"files": files, "counts": result.get("counts", {}), "metrics": result.get("metrics", {})}
            manifest = {"stage": name, "inputs": inputs, "outputs": outputs, "attempts": attempt, "seconds": seconds}
            write_json(manifest_path, manifest)
        processes.barrier(f"{name}:done")
        outputs = json.loads(manifest_path.read_text(encoding="utf-8"))["outputs"]
        self.timings[name] = seconds
        logging.info("%s: done in %.1f s (%s)", name, seconds, outputs["counts"])
        return outputs
