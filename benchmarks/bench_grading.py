"""Answer-grading throughput: checks per second for easy, medium and hard mixes.

    .venv/bin/python benchmarks/bench_grading.py [--n 300] [--workers 2] [--threads 8]

Mixes (half matching pairs, half not; random numbers so no cache can answer twice):
  easy    plain numbers (`1,234` vs `1234`, `0.5` vs `50%`): the in-caller fast path
  medium  fractions / LaTeX (`\\frac{a\\sqrt{b}}{c}`, intervals, tuples, pmatrix): the worker, mostly parsing
  hard    symbolic (expanded vs factored polynomials, trig identities): the worker, sympy simplify
For each mix it prints: single-threaded `answers_match` in a loop, `--threads` threads sharing one pool,
`answers_match_batch`, and as a baseline math-verify called in-process (main thread, its signal timeout).
The verdict cache is off for these figures; a last line shows single-threaded `answers_match` on the hard
mix with every pair asked 8 times (as MCTS rollouts repeat answers), cache on.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rstar_jax.grading import GraderPool, answers_match, answers_match_batch

Pair = tuple[str, str]


def easy(rng: random.Random) -> Pair:
    n = rng.randint(1000, 999_999)
    kind = rng.randrange(4)
    if kind == 0:
        return f"{n:,}", str(n + rng.randrange(2))
    if kind == 1:
        return f"{n / 100:.2f}", f"{n}\\%"
    if kind == 2:
        return f"{n}.0", str(n - rng.randrange(2))
    return f"\\${n}", str(n)


def medium(rng: random.Random) -> Pair:
    a, b, c = rng.randint(2, 40), rng.choice([2, 3, 5, 6, 7]), rng.randint(2, 40)
    same = rng.random() < 0.5
    kind = rng.randrange(4)
    if kind == 0:
        return f"\\frac{{{a}\\sqrt{{{b}}}}}{{{c}}}", f"\\frac{{{a}}}{{{c}}}\\sqrt{{{b if same else b + 1}}}"
    if kind == 1:
        return (
            f"\\left[ \\frac{{{a}}}{{{c}}}, {a + c}\\right)",
            f"[\\dfrac{{{2 * a}}}{{{2 * c}}}, {a + c}{')' if same else ']'}",
        )
    if kind == 2:
        return (
            f"\\left( {a}, -\\frac{{{b}}}{{{c}}} \\right)",
            f"({a}, -\\frac{{{b}}}{{{c}}})" if same else f"({b}, {a})",
        )
    return (
        f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}",
        f"\\begin{{bmatrix}} {a} \\\\ {b if same else c} \\end{{bmatrix}}",
    )


def hard(rng: random.Random) -> Pair:
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    same = rng.random() < 0.5
    kind = rng.randrange(3)
    if kind == 0:
        return f"(x+{a})^2(x-{b})", f"(x^2+{2 * a}x+{a * a})(x-{b if same else b + 1})"
    if kind == 1:
        return f"\\sin^2({a}x)+\\cos^2({a}x)+{b}", str(b + 1 if same else b + 2)
    return f"\\frac{{x^2-{a * a}}}{{x-{a}}}", f"x+{a if same else a + 1}"


def rate(n: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def math_verify_baseline(pairs: list[Pair]) -> None:
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    for pred, ref in pairs:
        verify(parse(f"\\boxed{{{ref}}}", config), parse(f"\\boxed{{{pred}}}", config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="checks per mix and mode")
    parser.add_argument("--workers", type=int, default=2, help="GraderPool max_workers")
    parser.add_argument("--threads", type=int, default=8, help="caller threads in the threaded mode")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    pool = GraderPool(max_workers=args.workers, cache_size=0)
    answers_match("x+1", "1+x", pool=pool)  # start one worker outside the timings
    rng = random.Random(0)
    print(f"n={args.n} per cell, workers={args.workers}, threads={args.threads}; figures are checks/second")
    print(f"{'mix':8s} {'single':>10s} {'threads':>10s} {'batch':>10s} {'math-verify in-process':>24s}")
    for name, make in (("easy", easy), ("medium", medium), ("hard", hard)):
        pairs = [make(rng) for _ in range(4 * args.n)]
        chunks = [pairs[i * args.n : (i + 1) * args.n] for i in range(4)]
        single = rate(args.n, lambda c=chunks[0]: [answers_match(p, r, pool=pool) for p, r in c])
        with ThreadPoolExecutor(max_workers=args.threads) as executor:
            threaded = rate(args.n, lambda c=chunks[1]: list(executor.map(lambda pr: answers_match(*pr, pool=pool), c)))
        batch = rate(args.n, lambda c=chunks[2]: answers_match_batch([p for p, _ in c], [r for _, r in c], pool=pool))
        baseline = rate(args.n, lambda c=chunks[3]: math_verify_baseline(c))
        print(f"{name:8s} {single:10.0f} {threaded:10.0f} {batch:10.0f} {baseline:24.0f}")
    pool.close()
    cached_pool = GraderPool(max_workers=args.workers)
    answers_match("x+1", "1+x", pool=cached_pool)
    distinct = [hard(rng) for _ in range(max(1, args.n // 8))]
    repeated = [pair for pair in distinct for _ in range(8)]
    cached = rate(len(repeated), lambda: [answers_match(p, r, pool=cached_pool) for p, r in repeated])
    print(f"hard mix, each pair 8x, cache on: {cached:.0f} checks/s single-threaded")
    cached_pool.close()


if __name__ == "__main__":
    main()
