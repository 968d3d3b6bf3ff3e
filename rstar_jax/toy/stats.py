"""Length statistics of toy problems (how many tokens they will cost the tiny model), and a CLI.

    python -m rstar_jax.toy.stats --n 2000 --seed 0

prints, per band, percentiles of: words (whitespace-separated), characters, word-piece tokens (runs of
letters, runs of digits, and single punctuation marks: a rough stand-in for a trained BPE), single-digit
tokens (numbers split into digits, as a character-level or digit-split tokenizer sees them), and the
characters of the intended computation rendered as ``var = expr  # comment`` lines; plus generation speed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Sequence

from rstar_jax.data import Problem
from rstar_jax.toy.generator import BANDS, generate_problems

_PIECES = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
_DIGIT_PIECES = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def steps_text(problem: Problem) -> str:
    """The intended computation as Python lines ``var = expr  # comment``."""
    return "\n".join(f"{s['var']} = {s['expr']}  # {s['comment']}" for s in problem.extra["steps"])


def _summary(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])
    return {"min": float(ordered[0]), "mean": statistics.fmean(ordered), "p50": pick(0.5), "p95": pick(0.95),
            "max": float(ordered[-1])}  # fmt: skip


def length_stats(problems: Sequence[Problem]) -> dict[str, dict[str, float]]:
    """Per measure (``words``, ``chars``, ``pieces``, ``digit_pieces``, ``step_chars``): min/mean/p50/p95/max."""
    if not problems:
        raise ValueError("length_stats: no problems")
    measures = {
        "words": [len(p.question.split()) for p in problems],
        "chars": [len(p.question) for p in problems],
        "pieces": [len(_PIECES.findall(p.question)) for p in problems],
        "digit_pieces": [len(_DIGIT_PIECES.findall(p.question)) for p in problems],
        "step_chars": [len(steps_text(p)) for p in problems],
    }
    return {name: _summary(values) for name, values in measures.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="problems per band")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for band in BANDS:
        start = time.perf_counter()
        problems = generate_problems(band, args.n, args.seed)
        seconds = time.perf_counter() - start
        print(f"{band}: {args.n} problems in {seconds:.2f} s ({args.n / seconds:,.0f} problems/s)")
        for name, summary in length_stats(problems).items():
            print(f"  {name:13s}" + "  ".join(f"{key} {value:7.1f}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
