"""Tree-search speed: the search's jitted kernels vs the plain-Python oracle, and the driver's own overhead.

    python -m benchmarks.bench_search [--trees 1024] [--rollouts 16] [--depth 8] [--children 8] [--repeats 5]
        [--skip-driver] [--xla-threads] [--async-dispatch]
    python benchmarks/bench_search.py

Part 1 runs one synthetic workload twice: with the kernels as the search calls them (`TreeKernels.build`: per
depth step one jitted `step` or `select` call for all trees, its next nodes and leaf flags fetched to the host)
and with the Python oracle of the search tests (tests/test_search_oracle.py: its `Node`, `OracleSearch.select`,
`Node.update` / `update_recursive`; one tree at a time, float64). A rollout follows the driver
(`BatchSearch.run`): select one level from the root; then, for `depth` depth steps, every tree whose current
node is a leaf expands it into K children with random local values (some terminal) and backs up one random
value from it, and every tree selects one level down (reference rules: unvisited children score 0, exhausted
subtrees are pruned). Values are multiples of 1/8, so both sides grow identical trees (the visit counts of every
node are checked). Timed: whole rollouts (select, expand, backup), compile excluded. Each repeat runs both sides
one after the other so that they share the machine's load (the short jitted side `JIT_RUNS` times); printed:
medians and minima in microseconds per rollout (all trees), the speed-up of the medians, and the CPU share.

Part 2 runs the lock-step driver (`BatchSearch`) with instant stubs (random policy, fake executor, hash PPM) and
reports the driver's wall time minus the time inside the policy, executor, grader and PPM, per expansion.

XLA:CPU setup of this process: the CPU client is created while the process may use one core only, then the
affinity is restored, so its intra-op pool has one thread and the few small ops of a call run inline instead of
being handed between threads (`--xla-threads` keeps the default pool); dispatch is synchronous
(`jax_cpu_enable_async_dispatch=False`; `--async-dispatch` keeps the default).

Measured with the defaults on the 2-core machine shared with a training job (load average ~3.3): 68x over the
oracle (jitted 3.9 ms, oracle 268 ms per rollout of 1024 trees). The packed `[B, N, 4]` / `[B, N, 5]` tables that
the named `[B, N]` fields replaced (issue 16) ran the same workload at 101x; before that change this benchmark
timed a whole-descent kernel that the search never called (83x there).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from rstar_jax.config import SearchConfig, UnvisitedRule  # noqa: E402
from rstar_jax.data import Problem  # noqa: E402
from rstar_jax.search import BatchSearch, SearchMode, TerminalKind, TreeKernels, init_tree  # noqa: E402
from rstar_jax.search.kernels import Expansion  # noqa: E402
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy  # noqa: E402

C_PUCT = 2.0
JIT_RUNS = 5  # jitted runs per repeat


def setup_cpu_client(threads: bool, async_dispatch: bool) -> None:
    """Creates the CPU client: synchronous dispatch unless `async_dispatch`; one intra-op thread unless `threads`."""
    jax.config.update("jax_cpu_enable_async_dispatch", async_dispatch)
    cores = os.sched_getaffinity(0)
    if not threads:
        os.sched_setaffinity(0, {min(cores)})
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, cores)


def _workload(trees: int, rollouts: int, depth: int, k: int, seed: int = 0):
    """Per rollout, depth step and tree: K child values, K terminal flags, one backed-up value (multiples of 1/8)."""
    rng = np.random.default_rng(seed)
    values = (rng.integers(-8, 9, size=(rollouts, depth, trees, k)) / 8).astype(np.float32)
    terminal = rng.random((rollouts, depth, trees, k)) < 0.25
    leaf_value = (rng.integers(-8, 9, size=(rollouts, depth, trees)) / 8).astype(np.float32)
    return values, terminal, leaf_value


def _run_oracle(values, terminal, leaf_value) -> tuple[float, list[list[int]]]:
    """The workload with the Python oracle's own code. Returns (seconds, visit counts in creation order)."""
    from tests.test_search_oracle import Node, OracleSearch

    rollouts, depth, trees, k = values.shape
    oracle = OracleSearch.__new__(OracleSearch)  # only `select` is used: it reads `cfg` alone
    oracle.cfg = SearchConfig(c_puct=C_PUCT, unvisited=UnvisitedRule.ZERO)
    values, terminal, leaf_value = values.tolist(), terminal.tolist(), leaf_value.tolist()
    roots = [Node("0", None, 0) for _ in range(trees)]
    created = [[root] for root in roots]
    start = time.perf_counter()
    for r in range(rollouts):
        for b, root in enumerate(roots):
            current = oracle.select(root)
            for d in range(depth):
                if current is None:
                    break
                if not current.children:
                    for j in range(k):
                        child = Node(f"{current.tag}.{j + 1}", current, current.depth + 1)
                        child.update(values[r][d][b][j])
                        child.terminal = terminal[r][d][b][j]
                        current.children.append(child)
                    created[b].extend(current.children)
                    current.update_recursive(leaf_value[r][d][b])
                current = oracle.select(current)
    return time.perf_counter() - start, [[n.visits for n in nodes] for nodes in created]


def _run_jitted(kernels: TreeKernels, values, terminal, leaf_value, rollouts: int):
    """The workload through the search's jitted kernels, `rollouts` of them. Returns (tree, seconds)."""
    _, depth, trees, k = values.shape
    kind = np.where(terminal, np.int8(TerminalKind.ANSWER), np.int8(TerminalKind.NONE))
    update, root = np.ones((trees, k), bool), np.zeros(trees, np.int32)
    tree = jax.block_until_ready(init_tree(trees, 1 + k * values.shape[0] * depth, k))
    start = time.perf_counter()
    for r in range(rollouts):
        tree, current, leaf = kernels.select(tree, root)
        current, leaf = np.asarray(current), np.asarray(leaf)
        for d in range(depth):
            if (current < 0).all():
                break
            if not leaf.any():
                tree, current, leaf = kernels.select(tree, current)
            else:
                node, backed = np.where(leaf, current, -1).astype(np.int32), leaf.astype(np.int32)
                v, leaf_v = values[r, d], leaf_value[r, d]
                expansion = Expansion(node, backed * k, kind[r, d], v, update, v, leaf_v, backed, leaf_v)
                tree, _, current, leaf = kernels.step(tree, expansion, current)
            current, leaf = np.asarray(current), np.asarray(leaf)
    return tree, time.perf_counter() - start


def _line(name: str, seconds: list[float], per: float) -> float:
    """Prints the median and minimum (us per rollout); returns the median (s)."""
    print(f"  {name}: median {statistics.median(seconds) * per:.0f} us/rollout (min {min(seconds) * per:.0f})")
    return statistics.median(seconds)


def bench_kernels(trees: int, rollouts: int, depth: int, k: int, repeats: int) -> None:
    work = _workload(trees, rollouts, depth, k)
    cfg = SearchConfig(c_puct=C_PUCT, unvisited=UnvisitedRule.ZERO, samples_per_expansion=k)
    kernels = TreeKernels.build(cfg)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    _run_jitted(kernels, *work, rollouts=2)  # compile
    compile_s = time.perf_counter() - t0
    jitted, oracle, share = [], [], {"jitted": [], "python": []}

    def timed(side: str, run):  # also records the CPU share of the run: CPU s / wall s, < 1 when starved
        w0, c0 = time.perf_counter(), time.process_time()
        out = run()
        share[side].append((time.process_time() - c0) / (time.perf_counter() - w0))
        return out

    for _ in range(repeats):  # interleaved: both sides see the same load
        gc.collect()
        for _ in range(JIT_RUNS):  # a jitted run is short: more samples of the load
            jitted.append(timed("jitted", lambda: _run_jitted(kernels, *work, rollouts=rollouts)))
        oracle.append(timed("python", lambda: _run_oracle(*work)))
    tree = jax.device_get(jitted[0][0])
    visits = [row[:size].tolist() for row, size in zip(tree.visit_count, tree.next_free, strict=True)]
    same = all(visits == run[1] for run in oracle)
    same = same and all(np.array_equal(tree.visit_count, run[0].visit_count) for run in jitted)
    node_depth = tree.depth[tree.parent >= 0]
    per = 1e6 / rollouts
    print(
        f"trees={trees} rollouts={rollouts} depth steps={depth} K={k} nodes={int(tree.next_free.sum())} "
        f"node depth mean {node_depth.mean():.2f} max {node_depth.max()} identical_trees={same}"
    )
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; {repeats} interleaved repeats "
        f"({JIT_RUNS} jitted runs, 1 oracle run per repeat)"
    )
    print(f"compile (excluded): {compile_s:.2f} s; select + expand + backup of all {trees} trees:")
    k_med = _line("jitted kernels, as the driver calls them", [run[1] for run in jitted], per)
    r_med = _line("python oracle (tests/test_search_oracle.py)", [run[0] for run in oracle], per)
    print(f"speed-up (medians): {r_med / k_med:.1f}x vs the python oracle")
    print(
        f"CPU share of a run (process CPU s / wall s, median): jitted {statistics.median(share['jitted']):.2f}, "
        f"python oracle {statistics.median(share['python']):.2f}"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def bench_driver(problems: int, rollouts: int, n: int, repeats: int) -> None:
    cfg = SearchConfig(rollouts=rollouts, samples_per_expansion=n, max_depth=8, batch_problems=problems)
    batch = [Problem(f"bench/{i}", f"Question {i}?", str(i % 3)) for i in range(problems)]
    kernels = TreeKernels.build(cfg)
    policy = RandomStepPolicy(weights=(4.0, 2.0, 0.5, 0.7, 0.2, 0.2))
    args = (cfg, SearchMode.TEST, policy, FakeExecutor(), BoxGrader(), HashPPM(), 0, kernels)
    BatchSearch(batch, *args).run_rollouts()  # warm-up: compiles the kernels for this shape
    runs = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        search = BatchSearch(batch, *args).run_rollouts()
        wall = time.perf_counter() - t0
        outside = sum(v for key, v in search.timings.items() if key != "kernel_s")
        runs.append((wall - outside, wall, outside, search))
    own = [run[0] / run[3].expansions for run in runs]
    _, wall, outside, search = min(runs, key=lambda run: run[0])
    print(
        f"driver: {problems} problems x {rollouts} rollouts x n={n}: {search.expansions} expansions, wall {wall:.2f} s"
        f" (best of {repeats})"
    )
    print(f"  in stubs (policy+executor+grader+ppm): {outside:.3f} s, kernels {search.timings['kernel_s']:.3f} s")
    print(
        f"  driver overhead per expansion (kernels + host bookkeeping): median {1e6 * statistics.median(own):.0f} us "
        f"(min {1e6 * min(own):.0f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=1024)
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--depth", type=int, default=8, help="depth steps per rollout (max_depth)")
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per side")
    parser.add_argument("--skip-driver", action="store_true")
    parser.add_argument("--xla-threads", action="store_true", help="keep XLA:CPU's default intra-op thread pool")
    parser.add_argument("--async-dispatch", action="store_true", help="keep JAX's asynchronous CPU dispatch")
    args = parser.parse_args(argv)
    setup_cpu_client(threads=args.xla_threads, async_dispatch=args.async_dispatch)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
        f"xla threads: {'default' if args.xla_threads else 'one'}, "
        f"dispatch: {'async' if args.async_dispatch else 'sync'}"
    )
    bench_kernels(args.trees, args.rollouts, args.depth, args.children, args.repeats)
    if not args.skip_driver:
        bench_driver(problems=64, rollouts=8, n=8, repeats=args.repeats)


if __name__ == "__main__":
    main()
