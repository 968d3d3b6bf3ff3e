"""Tests for rstar_jax.data.benchmarks: the nine benchmark files by name, counts and duplicate reports.

Tests that read the real files skip when the benchmark directory is absent.
"""

import collections
import json

import pytest

from rstar_jax.data import (
    BENCHMARK_DIR_ENV,
    BENCHMARK_NAMES,
    benchmark_path,
    default_benchmark_dir,
    load_benchmark,
)

# Record counts of the reference `eval_data` files (rstar_reference.md, Part B §11).
EXPECTED_COUNTS = {
    "gsm8k": 1319,
    "math": 5000,
    "math500": 500,
    "aime2024": 30,
    "amc23": 40,
    "collegemath": 2818,
    "gaokao2023en": 385,
    "olympiadbench": 675,
    "omni": 4428,
}


@pytest.fixture(scope="module")
def bench_dir():
    try:
        return default_benchmark_dir()
    except FileNotFoundError as err:
        pytest.skip(f"benchmark files not available: {err}")


def test_names_cover_the_nine_benchmarks():
    assert set(BENCHMARK_NAMES) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_benchmark_loads_with_reference_count(bench_dir, name):
    problems = load_benchmark(name)
    assert len(problems) == EXPECTED_COUNTS[name]
    raw = json.loads(benchmark_path(name).read_text(encoding="utf-8"))
    assert problems.ids == tuple(f"{name}/{record['index']}" for record in raw)
    assert all(p.question == r["question"] for p, r in zip(problems, raw, strict=True))


def _exact_text_extra_records(name: str) -> int:
    """Records beyond the first of each group of byte-identical questions, counted from the raw file."""
    raw = json.loads(benchmark_path(name).read_text(encoding="utf-8"))
    counts = collections.Counter(record["question"] for record in raw)
    return sum(n - 1 for n in counts.values())


def test_duplicate_reports_match_reference(bench_dir):
    # The reference's "36 duplicate questions" (collegemath) and "22" (omni) count records beyond the
    # first of each group of IDENTICAL question strings.
    assert _exact_text_extra_records("collegemath") == 36
    assert _exact_text_extra_records("omni") == 22
    # Our key also collapses whitespace, which finds one more collegemath pair that differs only in blank
    # lines (indices 2483 and 2487, same answer): 36 + 1.
    college = load_benchmark("collegemath")
    assert college.duplicate_count == 37 and len(college.duplicates) == 35
    assert ("collegemath/2483", "collegemath/2487") in college.duplicates
    omni = load_benchmark("omni")
    assert omni.duplicate_count == 22 and len(omni.duplicates) == 22
    assert load_benchmark("math500").duplicates == ()


def test_list_answers_and_blank_answers(bench_dir):
    math = load_benchmark("MATH")  # names are case-insensitive
    list_ids = [p.id for p in math if isinstance(p.answer, tuple)]
    assert list_ids == ["math/334", "math/2717", "math/2913", "math/2937"]
    assert len(load_benchmark("gaokao2023en").blank_answer_ids) == 2
    assert len(load_benchmark("omni").blank_answer_ids) == 9


def test_unknown_name_lists_allowed(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'; allowed: gsm8k, math, math500"):
        load_benchmark("gsm9k", data_dir=tmp_path)


def test_env_var_and_missing_directories(tmp_path, monkeypatch):
    (tmp_path / "amc23_test.json").write_text(json.dumps([{"index": 3, "question": "q", "answer": "1"}]))
    monkeypatch.setenv(BENCHMARK_DIR_ENV, str(tmp_path))
    assert default_benchmark_dir() == tmp_path
    assert load_benchmark("amc23").ids == ("amc23/3",)
    with pytest.raises(FileNotFoundError, match="benchmark 'aime2024': file .*aime2024_test.json not found"):
        load_benchmark("aime2024")
    monkeypatch.setenv(BENCHMARK_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=f"{BENCHMARK_DIR_ENV}=.*nope.* is not a directory"):
        default_benchmark_dir()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_benchmark("amc23", data_dir=tmp_path / "missing")
