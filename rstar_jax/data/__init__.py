"""Problem sets: the `Problem` record, file loading/writing, and the nine benchmarks by name."""

from rstar_jax.data.benchmarks import (
    BENCHMARK_DIR_ENV,
    BENCHMARK_FILES,
    BENCHMARK_NAMES,
    benchmark_path,
    default_benchmark_dir,
    load_benchmark,
)
from rstar_jax.data.problem import (
    Answer,
    Problem,
    ProblemFormatError,
    ProblemSet,
    SkippedRecord,
    find_duplicate_groups,
    has_blank_answer,
    normalize_question,
)
from rstar_jax.data.problem_files import load_problems, write_problems

__all__ = [
    "BENCHMARK_DIR_ENV",
    "BENCHMARK_FILES",
    "BENCHMARK_NAMES",
    "Answer",
    "Problem",
    "ProblemFormatError",
    "ProblemSet",
    "SkippedRecord",
    "benchmark_path",
    "default_benchmark_dir",
    "find_duplicate_groups",
    "has_blank_answer",
    "load_benchmark",
    "load_problems",
    "normalize_question",
    "write_problems",
]
