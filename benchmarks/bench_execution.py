"""Executor throughput: programs/s for trivial and for sympy-using programs, per zygote flavour and overall.

    python -m benchmarks.bench_execution [--workers 2] [--n 2000] [--sympy-n 600] [--repeats 3]
    python benchmarks/bench_execution.py

Measurements (each repeated `--repeats` times; min / median / max of programs/s, median CPU ms per program
over all processes, and the 1-minute load average before each run):
- trivial (LEAN): `print(i + 1)` with the default executor, routed to the LEAN (stdlib-only) zygotes;
- sympy (HEAVY): a solve() program, routed to the HEAVY zygotes (numpy, scipy, sympy preloaded);
- mixed 4:1: trivial and sympy programs interleaved in each batch (overall figure);
- trivial (HEAVY only): the trivial programs on an executor built with `lean_zygotes=False`.
Programs are all distinct (no memoisation). Figures depend on the host: on a shared machine, other processes
take CPU time; "CPU ms/program" is the figure least sensitive to that load.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable

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
_COUNTER = itertools.count()


def _trivial(n: int) -> list[str]:
    return [f"print({next(_COUNTER)} + 1)" for _ in range(n)]


def _sympy(n: int) -> list[str]:
    return [SYMPY_TEMPLATE.format(i=next(_COUNTER)) for _ in range(n)]


def _mixed(n: int) -> list[str]:
    return [SYMPY_TEMPLATE.format(i=next(_COUNTER)) if i % 5 == 4 else f"print({next(_COUNTER)})" for i in range(n)]


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


def _measure(ex: Executor, name: str, make: Callable[[int], list[str]], n: int, chunk: int, repeats: int) -> None:
    """Print programs/s (wall: min / median / max over `repeats`) and median CPU ms per program."""
    rates, cpu_ms, loads, failures = [], [], [], 0
    for _ in range(repeats):
        programs = make(n)
        pids = ex.worker_pids()
        loads.append(os.getloadavg()[0])
        cpu0, start = _cpu_seconds(pids), time.perf_counter()
        for i in range(0, n, chunk):
            failures += sum(not r.ok for r in ex.run_batch(programs[i : i + chunk]))
        wall, cpu = time.perf_counter() - start, _cpu_seconds(pids) - cpu0
        rates.append(n / wall)
        cpu_ms.append(1e3 * cpu / n)
    cpus = len(os.sched_getaffinity(0))
    ms = statistics.median(cpu_ms)
    print(
        f"{name}: {min(rates):.0f} / {statistics.median(rates):.0f} / {max(rates):.0f} programs/s wall "
        f"(min/median/max of {repeats} x {n}, {failures} not ok); {ms:.2f} CPU ms/program (all processes) "
        f"-> {cpus * 1e3 / ms:.0f} programs/s on {cpus} idle cores; load avg 1 min {min(loads):.2f}-{max(loads):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n", type=int, default=2000, help="trivial programs per run")
    parser.add_argument("--sympy-n", type=int, default=600, help="sympy-using programs per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--preload", nargs="*", default=list(DEFAULT_PRELOAD), help="modules preloaded in zygotes")
    parser.add_argument("--chunk", type=int, default=64, help="programs per run_batch call (an MCTS expansion)")
    args = parser.parse_args()

    print(f"cpus={os.cpu_count()} affinity={len(os.sched_getaffinity(0))} workers={args.workers}")
    for lean in (True, False):
        start = time.perf_counter()
        with Executor(timeout_s=10.0, workers=args.workers, preload=tuple(args.preload), lean_zygotes=lean) as ex:
            print(f"lean_zygotes={lean}: startup {time.perf_counter() - start:.2f} s; {len(ex.worker_pids())} zygotes")
            ex.run_batch(_trivial(4 * args.workers) + _sympy(2 * args.workers))  # warm the pipes
            if not lean:
                _measure(ex, "trivial (HEAVY only)", _trivial, args.n, args.chunk, args.repeats)
                continue
            print(f"protections: {ex.protections}")
            _measure(ex, "trivial (LEAN)", _trivial, args.n, args.chunk, args.repeats)
            _measure(ex, "sympy (HEAVY)", _sympy, args.sympy_n, args.chunk, args.repeats)
            _measure(ex, "mixed 4:1 trivial:sympy (overall)", _mixed, args.sympy_n * 2, args.chunk, args.repeats)
            [one] = ex.run_batch(["import time\nt = time.perf_counter()\nprint(1)"])
            print(f"single trivial program latency: {one.seconds * 1e3:.1f} ms (fork to reap, LEAN)")


if __name__ == "__main__":
    main()
