"""Executor throughput: programs/s for trivial and for sympy-using programs.

    python -m benchmarks.bench_execution [--workers 2] [--n 2000] [--sympy-n 600] [--preload numpy scipy sympy]
    python benchmarks/bench_execution.py

Programs are all distinct (no memoisation). Prints one line per measurement. Figures depend on the host:
on a shared or virtualised machine, fork cost grows with the pre-warmed interpreter's resident memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rstar_jax.execution import Executor  # noqa: E402
from rstar_jax.execution.executor import DEFAULT_PRELOAD  # noqa: E402

SYMPY_TEMPLATE = (
    "from sympy import symbols, Eq, solve, Rational\n"
    "x = symbols('x')\n"
    "# Step 1: set up the equation\n"
    "equation = Eq(3 * x + {i}, Rational({i}, 7))\n"
    "# Step 2: solve it\n"
    "solution = solve(equation, x)\n"
    "print(solution)\n"
)


def _cpu_seconds(zygote_pids: list[int]) -> float:
    """CPU seconds used so far by this process, the zygotes and their reaped children (the programs)."""
    own = os.times()
    total = own.user + own.system
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in zygote_pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def _measure(ex: Executor, name: str, programs: list[str], chunk: int) -> None:
    """Print programs/s (wall) and CPU ms per program, running `programs` in batches of `chunk`."""
    pids = ex.worker_pids()
    cpu0, start = _cpu_seconds(pids), time.perf_counter()
    failures = 0
    for i in range(0, len(programs), chunk):
        failures += sum(not r.ok for r in ex.run_batch(programs[i : i + chunk]))
    wall, cpu = time.perf_counter() - start, _cpu_seconds(pids) - cpu0
    n = len(programs)
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{name}: {n / wall:.0f} programs/s wall ({n} programs, {failures} not ok); "
        f"{1e3 * cpu / n:.2f} CPU ms/program (all processes) -> {cpus * n / cpu:.0f} programs/s on {cpus} idle cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n", type=int, default=2000, help="trivial programs")
    parser.add_argument("--sympy-n", type=int, default=600, help="sympy-using programs")
    parser.add_argument("--preload", nargs="*", default=list(DEFAULT_PRELOAD), help="modules preloaded in zygotes")
    parser.add_argument("--chunk", type=int, default=64, help="programs per run_batch call (an MCTS expansion)")
    args = parser.parse_args()

    start = time.perf_counter()
    with Executor(timeout_s=10.0, workers=args.workers, preload=tuple(args.preload)) as ex:
        print(f"cpus={os.cpu_count()} affinity={len(os.sched_getaffinity(0))} workers={args.workers}")
        print(f"startup: {time.perf_counter() - start:.2f} s; protections: {ex.protections}")
        ex.run_batch([f"print({-i})" for i in range(4 * args.workers)])  # warm the pipes
        _measure(ex, "trivial programs", [f"print({i} + 1)" for i in range(args.n)], args.chunk)
        _measure(ex, "sympy programs", [SYMPY_TEMPLATE.format(i=i) for i in range(args.sympy_n)], args.chunk)
        [one] = ex.run_batch(["import time\nt = time.perf_counter()\nprint(1)"])
        print(f"single trivial program latency: {one.seconds * 1e3:.1f} ms (fork to reap)")


if __name__ == "__main__":
    main()
