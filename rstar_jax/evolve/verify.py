"""The `verify` stage: every toy problem solved by its intended computation, through the real executor and grader.

For each problem the error-free teacher's code steps (`toy.solution`) are turned into a program
(`execution.build_program`), run in the sandboxed `Executor`, the answer step is written from the printed output,
its `\\boxed{}` answer extracted (`grading.extract_answer`) and compared with the gold answer
(`grading.answers_match`). Any failure means the data, the executor or the grader is broken, so the stage fails
loudly, naming the first problems that did not verify.
"""

import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from rstar_jax.config import RunConfig
from rstar_jax.data import Problem
from rstar_jax.execution import Executor, build_program
from rstar_jax.grading import answers_match_batch, extract_answer
from rstar_jax.progress import Progress
from rstar_jax.toy import solution

__all__ = ["VerificationError", "verify_toy_solutions"]

_CHUNK = 64


class VerificationError(RuntimeError):
    """Some toy problems' intended computations did not reproduce their gold answers."""


def verify_toy_solutions(cfg: RunConfig, problems: Sequence[Problem]) -> dict[str, Any]:
    """Runs and grades every problem's intended computation; returns counts and timings, raises on any failure."""
    programs = [build_program(solution.code_steps(p)) for p in problems]
    failures: list[str] = []
    start = time.perf_counter()
    ex_cfg = cfg.execution
    with (
        Executor(
            timeout_s=ex_cfg.timeout_s,
            memory_mb=ex_cfg.memory_mb,
            max_output_chars=ex_cfg.max_output_chars,
            workers=ex_cfg.workers or None,
            round_floats=ex_cfg.round_floats,
        ) as executor,
        Progress(total=len(problems), desc="verify toy solutions", unit="prob", enabled=cfg.progress_bars) as bar,
    ):
        for lo in range(0, len(problems), _CHUNK):
            chunk = problems[lo : lo + _CHUNK]
            results = executor.run_batch(programs[lo : lo + _CHUNK])
            ran = [(p, r) for p, r in zip(chunk, results, strict=True) if r.ok]
            failures += [
                f"{p.id}: execution failed ({r.error})" for p, r in zip(chunk, results, strict=True) if not r.ok
            ]
            preds = [extract_answer(solution.answer_step(r.output)) for _, r in ran]
            verdicts = answers_match_batch(
                preds,
                [p.answer for p, _ in ran],
                timeout_s=cfg.grading.timeout_s,
                percent_as_fraction=cfg.grading.percent_as_fraction,
            )
            for (problem, result), ok in zip(ran, verdicts, strict=True):
                if not ok:
                    failures.append(f"{problem.id}: printed {result.output.strip()!r}, gold {problem.answer!r}")
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    summary = {"problems": len(problems), "verified": len(problems) - len(failures), "seconds": round(seconds, 2)}
    logging.info("verify: %d/%d toy solutions reproduce their gold answers", summary["verified"], len(problems))
    if failures:
        raise VerificationError(f"{len(failures)} toy problems did not verify, e.g.: " + "; ".join(failures[:5]))
    return summary
