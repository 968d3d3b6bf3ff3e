"""The nine evaluation benchmarks of rStar-Math, loaded by name.

The files are not shipped with rstar_jax. They are read from a directory: the ``data_dir`` argument,
else `default_benchmark_dir()` (env ``RSTAR_BENCHMARK_DIR``, else ``<repo root>/../shared/data/benchmarks``).
Each file is a JSON list of ``{index, question, answer}``; ids are ``{name}/{index}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from rstar_jax.data.problem import ProblemSet
from rstar_jax.data.problem_files import load_problems

BENCHMARK_DIR_ENV = "RSTAR_BENCHMARK_DIR"

BENCHMARK_FILES: Mapping[str, str] = MappingProxyType(
    {
        "gsm8k": "GSM8K_test.json",
        "math": "MATH_test.json",
        "math500": "math500_test.json",
        "aime2024": "aime2024_test.json",
        "amc23": "amc23_test.json",
        "collegemath": "collegemath_test.json",
        "gaokao2023en": "gaokao2023en_test.json",
        "olympiadbench": "olympiadbench_test.json",
        "omni": "omni_test.json",
    }
)
"""Benchmark name -> file name inside the benchmark directory."""

BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARK_FILES)


def default_benchmark_dir() -> Path:
    """The benchmark directory: ``$RSTAR_BENCHMARK_DIR`` if set, else ``<repo root>/../shared/data/benchmarks``.

    Raises:
      FileNotFoundError: the chosen directory does not exist (the message says how to set it).
    """
    env = os.environ.get(BENCHMARK_DIR_ENV)
    if env:
        directory = Path(env).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"${BENCHMARK_DIR_ENV}={env!r} is not a directory")
        return directory
    repo_root = Path(__file__).resolve().parents[2]
    directory = repo_root.parent / "shared" / "data" / "benchmarks"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no benchmark directory: {directory} does not exist; set ${BENCHMARK_DIR_ENV} or pass data_dir"
        )
    return directory


def benchmark_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the benchmark file for `name` (case-insensitive); ValueError lists the allowed names."""
    key = name.lower()
    if key not in BENCHMARK_FILES:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARK_NAMES)}")
    directory = default_benchmark_dir() if data_dir is None else Path(data_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"benchmark directory {directory} does not exist")
    path = directory / BENCHMARK_FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f"benchmark {key!r}: file {path} not found")
    return path


def load_benchmark(name: str, data_dir: str | os.PathLike[str] | None = None) -> ProblemSet:
    """Loads benchmark `name` (one of `BENCHMARK_NAMES`) strictly; ids are ``{name}/{index}``."""
    return load_problems(benchmark_path(name, data_dir), source=name.lower())
