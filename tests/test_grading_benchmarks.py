"""Every reference answer of math500 and gsm8k must match itself boxed inside a sentence."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rstar_jax.grading import GraderPool, answers_match_batch, extract_answer

_FILES = {"math500": "math500_test.json", "gsm8k": "GSM8K_test.json"}


def _answers_from_json(name: str) -> list[str | tuple[str, ...]]:
    directory = Path(
        os.environ.get("RSTAR_BENCHMARK_DIR", Path(__file__).resolve().parents[1].parent / "shared/data/benchmarks")
    )
    path = directory / _FILES[name]
    if not path.is_file():
        pytest.skip(f"benchmark file {path} absent (set RSTAR_BENCHMARK_DIR)")
    records = json.loads(path.read_text(encoding="utf-8"))
    return [tuple(r["answer"]) if isinstance(r["answer"], list) else str(r["answer"]) for r in records]


def _answers(name: str) -> list[str | tuple[str, ...]]:
    """Reference answers via `rstar_jax.data.load_benchmark`, falling back to the raw JSON files."""
    try:
        from rstar_jax.data import load_benchmark
    except ImportError:
        return _answers_from_json(name)
    try:
        return [problem.answer for problem in load_benchmark(name).problems]
    except FileNotFoundError as err:
        pytest.skip(f"benchmark {name} absent: {err}")


@pytest.fixture(scope="module")
def pool():
    grader_pool = GraderPool(max_workers=2)
    yield grader_pool
    grader_pool.close()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "expected_count"), [("math500", 500), ("gsm8k", 1319)])
def test_reference_answers_match_themselves(pool, name, expected_count):
    answers = _answers(name)
    assert len(answers) == expected_count
    preds, refs = [], []
    for answer in answers:
        for alternative in (answer,) if isinstance(answer, str) else answer:
            text = f"So the answer is $\\boxed{{{alternative}}}$."
            extracted = extract_answer(text)
            assert extracted == alternative.strip(), f"{name}: extraction of {alternative!r} gave {extracted!r}"
            preds.append(extracted)
            refs.append(answer)
    verdicts = answers_match_batch(preds, refs, timeout_s=10.0, pool=pool)
    failures = [(p, r) for p, r, ok in zip(preds, refs, verdicts, strict=True) if not ok]
    assert not failures, f"{name}: {len(failures)} answers do not match themselves, e.g. {failures[:5]}"

    # The same pairs through the symbolic worker alone (no string fast path): math-verify must parse every
    # reference answer into something equal to itself.
    def symbolic(i: int) -> bool:
        alternatives = [refs[i]] if isinstance(refs[i], str) else list(refs[i])
        return pool.check(preds[i], alternatives, True, 10.0)

    with ThreadPoolExecutor(max_workers=pool.max_workers) as executor:
        symbolic_verdicts = list(executor.map(symbolic, range(len(preds))))
    failures = [(p, r) for p, r, ok in zip(preds, refs, symbolic_verdicts, strict=True) if not ok]
    assert not failures, f"{name}: {len(failures)} answers fail the symbolic self-check, e.g. {failures[:5]}"
