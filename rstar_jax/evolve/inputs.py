"""A run's inputs: the preflight checks of what the config points at, and the two stages that prepare the data.

- `preflight` checks, writing nothing: the workdir (a writable directory, or creatable), the problem file (read and
  parsed: a bad record is named with its line), the model directories (`config.json` and weights), the benchmark
  files, that a run starting at round r > 1 finds round r - 1 finished in the workdir, and that the workdir's
  problems (if any) were made from the same inputs.
- `prepare_problems` (stage `problems`): the training and held-out problems (the toy domain from `config.toy`, or
  `config.data.train_file`) written to `<workdir>/problems/{train,test}.jsonl` with a manifest (inputs, counts,
  checksums). A rerun with the same inputs reuses them; a rerun with different inputs is refused (`StageRefused`),
  naming what changed.
- `check_benchmarks` (stage `benchmarks`): the `config.data.eval_benchmarks` loaded and checked (counts, duplicate
  questions).
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax import data, toy
from rstar_jax.config import SCRATCH_BASE, ConfigError, RunConfig, to_dict
from rstar_jax.data import Problem
from rstar_jax.evolve.stages import MANIFEST, StageRefused, diff_inputs
from rstar_jax.workdir import RunDir, file_sha256, write_json

__all__ = ["Splits", "check_benchmarks", "preflight", "prepare_problems"]


@dataclasses.dataclass(frozen=True)
class Splits:
    """The training and held-out problems of a run."""

    train: list[Problem]
    test: list[Problem]


def _problem_inputs(cfg: RunConfig) -> dict[str, Any]:
    if cfg.data.train_file:
        path = Path(cfg.data.train_file).expanduser().resolve()
        return {
            "source": "file",
            "train_file": str(path),
            "sha256": file_sha256(path) if path.is_file() else None,
            "skip_bad_records": cfg.data.skip_bad_records,
        }
    return {"source": "toy", "toy": to_dict(cfg.toy)}


def _check_workdir(cfg: RunConfig) -> Path:
    root = Path(cfg.workdir).expanduser().resolve()
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        what = "is not a directory" if existing == root else f"cannot be created: {existing} is not a directory"
        raise ConfigError(f"config.workdir = {cfg.workdir!r}: {root} {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"config.workdir = {cfg.workdir!r}: {existing} is not writable")
    return root


def _check_model_dir(key: str, value: str) -> None:
    from rstar_jax.models.config import load_config  # local: only a run with a real model pays for importing it
    from rstar_jax.models.hf_io import INDEX_FILE, SINGLE_FILE

    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key} = {value!r}: {path} is not a directory (an HF model directory is expected)")
    try:
        load_config(path)
    except ValueError as err:
        raise ConfigError(f"{key} = {value!r}: {err}") from None
    if not ((path / INDEX_FILE).is_file() or (path / SINGLE_FILE).is_file()):
        raise ConfigError(f"{key} = {value!r}: no weights in {path} (neither {SINGLE_FILE} nor {INDEX_FILE})")


def _check_toy_base() -> None:
    from rstar_jax.toy.base_build import check_base
    from rstar_jax.toy.base_corpus import BASE_DIR

    try:
        check_base(BASE_DIR)
    except ValueError as err:
        raise ConfigError(
            f"config.model.base = '' (the committed toy base): {err}; build it with `python -m launch.pretrain "
            f"--config=configs/toy_base.py`, or set config.model.base={SCRATCH_BASE}"
        ) from None


def _check_previous_round(cfg: RunConfig, root: Path) -> None:
    prev = cfg.first_round - 1
    for stage in ("sft", "ppm"):
        manifest = RunDir(root).round(prev).root / stage / MANIFEST
        if not manifest.is_file():
            raise ConfigError(
                f"config.first_round = {cfg.first_round}: round {prev} is not finished in config.workdir = "
                f"{cfg.workdir!r} ({manifest} is missing); run rounds 1..{prev} there first, or start at round 1"
            )


def preflight(cfg: RunConfig) -> data.ProblemSet | None:
    """Checks everything the config points at, writing nothing (module docstring); raises `ConfigError`, or
    `StageRefused` when the workdir's problems were made from other inputs.

    Returns the problems of `config.data.train_file` (parsed once here), or None for the toy domain."""
    root = _check_workdir(cfg)
    problems = None
    if cfg.data.train_file:
        path = Path(cfg.data.train_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"config.data.train_file = {cfg.data.train_file!r}: {path} is not a file")
        try:
            problems = data.load_problems(path, skip_bad=cfg.data.skip_bad_records)
        except (data.ProblemFormatError, ValueError) as err:
            raise ConfigError(f"config.data.train_file: {err}") from None
    base = "" if cfg.model.base == SCRATCH_BASE else cfg.model.base
    for key, value in (("config.model.base", base), ("config.model.bootstrap", cfg.model.bootstrap)):
        if value and (cfg.run_rounds or key.endswith("base")):
            _check_model_dir(key, value)
    if cfg.run_rounds and not cfg.model.base and not cfg.data.train_file:
        _check_toy_base()
    for name in cfg.data.eval_benchmarks:
        try:
            data.benchmark_path(name, cfg.data.benchmark_dir or None)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"config.data.benchmark_dir = {cfg.data.benchmark_dir!r}: {err}") from None
    if cfg.run_rounds and cfg.first_round > 1:
        _check_previous_round(cfg, root)
    _problems_manifest(RunDir(root).problems / "manifest.json", _problem_inputs(cfg))
    return problems


def _problems_manifest(manifest_path: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The problems stage's manifest, if any; `StageRefused` when it was made from other inputs."""
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    changed = diff_inputs(manifest["inputs"], inputs)
    if changed:
        raise StageRefused(
            f"{manifest_path} was made from other inputs ({'; '.join(changed)}); use a new config.workdir"
        )
    return manifest


def prepare_problems(cfg: RunConfig, run_dir: RunDir, loaded: data.ProblemSet | None = None) -> Splits:
    """Stage `problems`: writes (or reuses) `problems/{train,test}.jsonl`, the manifest last (its commit marker).

    `loaded`: the problems of `config.data.train_file` when the caller has read them already (`preflight`)."""
    manifest_path = run_dir.problems / "manifest.json"
    inputs = _problem_inputs(cfg)
    paths = {"train": run_dir.problems / "train.jsonl", "test": run_dir.problems / "test.jsonl"}
    manifest = _problems_manifest(manifest_path, inputs)
    if manifest is not None:
        intact = all(p.exists() and file_sha256(p) == manifest["files"][k]["sha256"] for k, p in paths.items())
        if intact:
            logging.info("problems: reusing %s (%s)", run_dir.problems, manifest["counts"])
            return Splits(**{k: list(data.load_problems(p).problems) for k, p in paths.items()})
        logging.warning("problems: files under %s do not match their manifest; regenerating", run_dir.problems)
    if inputs["source"] == "toy":
        spec = toy.ToySpec(
            train_per_band=cfg.toy.train_per_band,
            test_per_band=cfg.toy.test_per_band,
            seed=cfg.toy.seed,
            bands=tuple(b.value for b in cfg.toy.bands),
        )
        splits = toy.generate_toy_splits(spec)
        result = Splits(train=list(splits["train"]), test=list(splits["test"]))
    else:
        if loaded is None:
            loaded = data.load_problems(cfg.data.train_file, skip_bad=cfg.data.skip_bad_records)
        result = Splits(train=list(loaded.problems), test=[])
    for k, p in paths.items():
        data.write_problems(p, getattr(result, k))
    write_json(
        manifest_path,
        {
            "inputs": inputs,
            "counts": {k: len(getattr(result, k)) for k in paths},
            "files": {k: {"path": p.name, "sha256": file_sha256(p)} for k, p in paths.items()},
        },
    )
    logging.info(
        "problems: wrote %d train and %d test problems to %s",
        len(result.train),
        len(result.test),
        run_dir.problems,
    )
    return result


def check_benchmarks(cfg: RunConfig) -> dict[str, dict[str, int]]:
    """Stage `benchmarks`: loads each configured benchmark; returns record and duplicate counts per name."""
    summary = {}
    for name in cfg.data.eval_benchmarks:
        loaded = data.load_benchmark(name, cfg.data.benchmark_dir or None)
        summary[name] = {"problems": len(loaded.problems), "duplicate_questions": loaded.duplicate_count}
        logging.info("benchmark %s: %d problems, %d duplicate questions", name, *summary[name].values())
    return summary
