"""A run's inputs: the preflight checks of what the config points at, and the two stages that prepare the data.

- `preflight` checks, writing nothing: the workdir (a writable directory, or creatable), the problem file (read and
  parsed: a bad record is named with its line), the model directories (`config.json`, and the header of every
  safetensors file), the benchmark files (parsed), round 1's few-shot prompt files (a model as bootstrap policy),
  that a run starting at round r > 1 finds round r - 1 finished in the workdir, and that the workdir's problems (if
  any) were made from the same inputs.
- `prepare_problems` (stage `problems`, a `Stages` stage like every other): the training and held-out problems
  written to `<workdir>/problems/{train,test}.jsonl`: the toy domain's splits (`config.toy`), or the problems of
  `config.data.train_file` with, as held-out problems, at most `config.data.eval_subset` problems of each of
  `config.data.eval_benchmarks` (`data.held_out.benchmark_subset`, seeded by `config.seed`; their band is the
  benchmark's name). Training problems whose question matches an evaluated one (`data.held_out.drop_overlap`) are
  dropped; the stage's counts say how many (`dropped_overlap`), its metrics which, and the log says it once.
  A rerun with the same inputs reuses them; a rerun with different inputs is refused (`StageRefused`) naming what
  changed, before anything is written, unless `config.evolve.force`.
- `check_benchmarks` (stage `benchmarks`): the `config.data.eval_benchmarks` loaded and checked (counts, duplicate
  questions).
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax import data, toy
from rstar_jax.config import SCRATCH_BASE, ConfigError, RunConfig, to_dict
from rstar_jax.data import Problem, held_out
from rstar_jax.evolve.stages import (
    MANIFEST,
    StageOutputs,
    StageRefused,
    Stages,
    changed_files,
    diff_inputs,
    plain_inputs,
)
from rstar_jax.workdir import RunDir, check_writable_dir, file_sha256

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
        } | _held_out_inputs(cfg)
    return {"source": "toy", "toy": to_dict(cfg.toy)}


def _held_out_inputs(cfg: RunConfig) -> dict[str, Any]:
    """The benchmarks a real-data run evaluates on (only when some are set: real-data workdirs made before the
    rounds evaluated on benchmarks still resume)."""
    if not cfg.data.eval_benchmarks:
        return {}
    paths = {name: data.benchmark_path(name, cfg.data.benchmark_dir or None) for name in cfg.data.eval_benchmarks}
    return {
        "held_out": {
            "benchmarks": {name: file_sha256(path) for name, path in paths.items()},
            "eval_subset": cfg.data.eval_subset,
            "seed": cfg.seed,
        }
    }


def _benchmark_held_out(cfg: RunConfig) -> list[Problem]:
    """The evaluated problems of a real-data run: each benchmark's seeded subset, band = the benchmark's name."""
    out: list[Problem] = []
    for name in cfg.data.eval_benchmarks:
        problems = data.load_benchmark(name, cfg.data.benchmark_dir or None).problems
        chosen = held_out.benchmark_subset(problems, cfg.data.eval_subset, cfg.seed)
        out += [dataclasses.replace(p, extra={**p.extra, "band": name}) for p in chosen]
    return out


def _check_workdir(cfg: RunConfig) -> Path:
    try:
        return check_writable_dir(cfg.workdir, f"config.workdir = {cfg.workdir!r}")
    except OSError as err:
        raise ConfigError(str(err)) from None


def _check_model_dir(key: str, value: str) -> None:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key} = {value!r}: {path} is not a directory (an HF model directory is expected)")
    from rstar_jax.models.config import load_config  # local: only a run with a real model pays for importing it
    from rstar_jax.models.hf_io import INDEX_FILE, SINGLE_FILE, check_weight_headers

    try:
        load_config(path)
    except ValueError as err:
        raise ConfigError(f"{key} = {value!r}: {err}") from None
    if not ((path / INDEX_FILE).is_file() or (path / SINGLE_FILE).is_file()):
        raise ConfigError(f"{key} = {value!r}: no weights in {path} (neither {SINGLE_FILE} nor {INDEX_FILE})")
    try:
        check_weight_headers(path)  # an empty or corrupt safetensors file, before the workdir is written
    except ValueError as err:
        raise ConfigError(f"{key} = {value!r}: {err}") from None


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


def _check_bootstrap_prompt(cfg: RunConfig) -> None:
    """Round 1's few-shot prompt files (when a model is the policy and `evolve.bootstrap_shots` > 0) read."""
    from rstar_jax.evolve.model_cache import bootstrap_prompt  # local: loads the model stack

    try:
        bootstrap_prompt(cfg)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"config.data.reference_dir = {cfg.data.reference_dir!r}: {err}") from None


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
    if cfg.run_rounds and cfg.first_round == 1:
        _check_bootstrap_prompt(cfg)
    for name in cfg.data.eval_benchmarks:
        try:
            data.benchmark_path(name, cfg.data.benchmark_dir or None)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"config.data.benchmark_dir = {cfg.data.benchmark_dir!r}: {err}") from None
        try:
            data.load_benchmark(name, cfg.data.benchmark_dir or None)  # parsed: a bad record, before any write
        except ValueError as err:
            raise ConfigError(f"config.data.eval_benchmarks: {name}: {err}") from None
    if cfg.run_rounds and cfg.first_round > 1:
        _check_previous_round(cfg, root)
    _problems_manifest(RunDir(root).problems / MANIFEST, _problem_inputs(cfg), cfg.evolve.force)
    return problems


def preflight_ablation(cfg: RunConfig, r: int) -> data.ProblemSet | None:
    """`preflight`, then the check that round `r` of the workdir has the data and models `launch.ablate` needs, its
    data files as the extract stage wrote them (their sha256 in `data/manifest.json`)."""
    loaded = preflight(cfg)
    round_dir = RunDir(Path(cfg.workdir).expanduser().resolve()).round(r)
    for stage in ("data", "sft", "ppm"):  # before the workdir is touched: nothing to ablate without them
        if not (round_dir.root / stage / MANIFEST).is_file():
            raise ConfigError(
                f"launch.ablate --round={r}: {round_dir.root / stage / MANIFEST} is missing in config.workdir = "
                f"{cfg.workdir!r}; finish round {r} there first (launch.evolve with config.last_round >= {r})"
            )
    manifest = round_dir.data / MANIFEST  # the ablation trains on data/orm.json and pqm.json as they are
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["outputs"]["files"]
    except (ValueError, KeyError, TypeError) as err:
        raise StageRefused(f"{manifest}: unreadable stage manifest ({type(err).__name__}: {err})") from None
    changed = changed_files(round_dir.data, files)
    if changed:
        raise StageRefused(
            f"launch.ablate --round={r}: {round_dir.data / changed[0]} changed since round {r}'s extract stage wrote "
            f"it (its sha256 in {manifest} differs, or it is missing); restore it, or rerun launch.evolve in "
            f"config.workdir = {cfg.workdir!r}, which redoes the stage"
        )
    return loaded


def _problems_manifest(manifest_path: Path, inputs: dict[str, Any], force: bool) -> None:
    """`StageRefused`, before anything is written, when the workdir's problems were made from other inputs (and
    `config.evolve.force` is off); the `problems` stage itself would refuse the same way, later."""
    if force or not manifest_path.exists():
        return
    changed = diff_inputs(json.loads(manifest_path.read_text(encoding="utf-8"))["inputs"], plain_inputs(inputs))
    if changed:
        raise StageRefused(
            f"{manifest_path}: stage problems finished with other inputs ({'; '.join(changed)}); use a new "
            "config.workdir, or --config.evolve.force=true to redo it and every stage after it"
        )


def prepare_problems(
    cfg: RunConfig, run_dir: RunDir, stages: Stages, loaded: data.ProblemSet | None = None
) -> tuple[Splits, StageOutputs]:
    """Stage `problems`: writes (or reuses) `problems/{train,test}.jsonl`; returns the splits and the stage outputs.

    `loaded`: the problems of `config.data.train_file` when the caller has read them already (`preflight`)."""
    paths = {"train": run_dir.problems / "train.jsonl", "test": run_dir.problems / "test.jsonl"}

    def body() -> StageOutputs:
        nonlocal loaded
        dropped: list[str] = []
        if cfg.data.train_file:
            if loaded is None:
                loaded = data.load_problems(cfg.data.train_file, skip_bad=cfg.data.skip_bad_records)
            test = _benchmark_held_out(cfg)
            train, dropped = held_out.drop_overlap(loaded.problems, test)
            result = Splits(train=train, test=test)
            if test:
                logging.log(
                    logging.WARNING if dropped else logging.INFO,
                    "problems: dropped %d training problem(s) whose question matches one of the %d evaluated "
                    "benchmark problems (config.data.eval_benchmarks)%s",
                    len(dropped),
                    len(test),
                    f", e.g. {dropped[0]}" if dropped else "",
                )
        else:
            spec = toy.ToySpec(
                train_per_band=cfg.toy.train_per_band,
                test_per_band=cfg.toy.test_per_band,
                seed=cfg.toy.seed,
                bands=tuple(b.value for b in cfg.toy.bands),
            )
            splits = toy.generate_toy_splits(spec)
            result = Splits(train=list(splits["train"]), test=list(splits["test"]))
        for k, path in paths.items():
            data.write_problems(path, getattr(result, k))
        logging.info("problems: wrote %d train and %d test problems to %s", *(len(getattr(result, k)) for k in paths),
                     run_dir.problems)  # fmt: skip
        counts = {k: len(getattr(result, k)) for k in paths}
        if cfg.data.train_file and cfg.data.eval_benchmarks:
            return {"files": list(paths.values()), "counts": counts | {"dropped_overlap": len(dropped)},
                    "metrics": {"dropped_overlap_ids": dropped}}  # fmt: skip
        return {"files": list(paths.values()), "counts": counts}

    outputs = stages.run(run_dir.problems, "problems", _problem_inputs(cfg), body)
    counts = outputs["counts"]  # an empty split (no held-out problems for a problem file) reads back as []
    splits = {k: list(data.load_problems(p).problems) if counts[k] else [] for k, p in paths.items()}
    return Splits(**splits), outputs


def check_benchmarks(cfg: RunConfig) -> dict[str, dict[str, int]]:
    """Stage `benchmarks`: loads each configured benchmark; returns record and duplicate counts per name."""
    summary = {}
    for name in cfg.data.eval_benchmarks:
        loaded = data.load_benchmark(name, cfg.data.benchmark_dir or None)
        summary[name] = {"problems": len(loaded.problems), "duplicate_questions": loaded.duplicate_count}
        logging.info("benchmark %s: %d problems, %d duplicate questions", name, *summary[name].values())
    return summary
