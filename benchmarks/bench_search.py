"""Tree-search speed: jitted select + backup vs a plain-Python tree, and the driver's own overhead per expansion.

    python -m benchmarks.bench_search [--trees 1024] [--rollouts 64] [--children 8] [--repeats 5] [--skip-driver]
        [--xla-threads] [--async-dispatch]
    python benchmarks/bench_search.py

Part 1 runs the same synthetic workload with the jitted kernels (all trees in one call per operation) and with
two plain-Python object trees (one tree at a time, float64): the Python oracle of the search tests
(tests/test_search_oracle.py: its `Node`, `OracleSearch.select`, `Node.update_recursive`) and leaner nodes
written for speed. Every rollout descends each tree from the root by UCT (reference rules: unvisited children
score 0, exhausted subtrees are pruned) to an unexpanded node, expands it into K children with random local
values (some terminal), and backs up one random terminal value to the root. Child values are multiples of 1/8,
so all sides reach identical trees (visit counts of every node checked). Timed: select and backup (expansion
apart), compile excluded; the jitted side twice: a descend call and a backup call per rollout, and the backup
of a rollout fused with the next descent (one call per rollout, as a search loop calls them). Each repeat runs
all sides one after the other so that they share the machine's load (the short jitted runs `JIT_RUNS` times);
printed: medians and minima over runs in microseconds per rollout (all trees), speed-ups of the medians, the
load average and the CPU share.

Part 2 runs the lock-step driver (`BatchSearch`) with instant stubs (random policy, fake executor, hash PPM) and
reports the driver's wall time minus the time inside the policy, executor, grader and PPM, per expansion.

XLA:CPU setup of this process: the CPU client is created while the process may use one core only, then the
affinity is restored, so its intra-op pool has one thread and the ~10 small ops of a level run inline instead of
being handed between threads (`--xla-threads` keeps the default pool); dispatch is synchronous
(`jax_cpu_enable_async_dispatch=False`, a call runs on the calling thread; `--async-dispatch` keeps the
default); kernels are compiled with `kernels.JIT_OPTIONS` (512-bit vectors, ~10%); inputs are staged on device
once. Measured on the 2-core machine shared with other jobs (load average ~5), fused select + backup vs the
oracle: one thread + sync 150x, one thread + async 95x, default pool + sync 51x, JAX defaults 38x. Part 2 runs
in the same process, with `TreeKernels.build` as a search does.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import os
import statistics
import sys
import time

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rstar_jax.config import SearchConfig, UnvisitedRule  # noqa: E402
from rstar_jax.data import Problem  # noqa: E402
from rstar_jax.search import SearchMode, TreeKernels, backup, descend, expand, init_tree  # noqa: E402
from rstar_jax.search.driver import BatchSearch  # noqa: E402
from rstar_jax.search.kernels import JIT_OPTIONS  # noqa: E402
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


def _workload(trees: int, rollouts: int, k: int, seed: int = 0):
    """Per rollout and tree: K child values, K terminal flags, one backed-up value (all multiples of 1/8)."""
    rng = np.random.default_rng(seed)
    values = (rng.integers(-8, 9, size=(rollouts, trees, k)) / 8).astype(np.float32)
    terminal = rng.random((rollouts, trees, k)) < 0.25
    leaf_value = (rng.integers(-8, 9, size=(rollouts, trees)) / 8).astype(np.float32)
    return values, terminal, leaf_value


class _Node:
    __slots__ = ("children", "n", "parent", "terminal", "w")

    def __init__(self, parent, n=0, w=0.0, terminal=False):
        self.parent, self.n, self.w, self.terminal, self.children = parent, n, w, terminal, []


def _py_select(node):
    """One tree: descend by UCT to an unexpanded node (None when pruned)."""
    while True:
        if not node.children and not node.terminal:
            return node
        best, best_score = None, -math.inf
        for child in node.children:
            if child.terminal:
                continue
            if child.n == 0 or node.n == 0:
                score = child.w / child.n if child.n else 0.0
            else:
                score = child.w / child.n + C_PUCT * math.sqrt(math.log(node.n) / child.n)
            if score > best_score:
                best, best_score = child, score
        if best is None:
            node.terminal = True
            return None
        node = best


def _py_backup(node, value):
    while node is not None:
        node.n += 1
        node.w += value
        node = node.parent


def _run_oracle(values, terminal, leaf_value) -> tuple[float, float, list[int]]:
    """The workload with the Python oracle's own code (tests/test_search_oracle.py: `Node`, `OracleSearch.select`
    one level at a time, `Node.update_recursive`). Returns (select s, backup s, visit counts in creation order)."""
    from tests.test_search_oracle import Node, OracleSearch

    rollouts, trees, k = values.shape
    oracle = OracleSearch.__new__(OracleSearch)  # only `select` is used: it reads `cfg` alone
    oracle.cfg = SearchConfig(c_puct=C_PUCT, unvisited=UnvisitedRule.ZERO)
    t_sel = t_back = 0.0
    roots = [Node("0", None, 0) for _ in range(trees)]
    created = [[root] for root in roots]
    for r in range(rollouts):
        for b, root in enumerate(roots):
            t0 = time.perf_counter()
            node, nxt = None, root
            while nxt is not None and nxt is not node:
                node, nxt = nxt, oracle.select(nxt)
            t1 = time.perf_counter()
            t_sel += t1 - t0
            if nxt is None:
                continue
            for j in range(k):
                child = Node(f"{node.tag}.{j + 1}", node, node.depth + 1)
                child.update(float(values[r, b, j]))
                child.terminal = bool(terminal[r, b, j])
                node.children.append(child)
            created[b].extend(node.children)
            t2 = time.perf_counter()
            node.update_recursive(float(leaf_value[r, b]))
            t_back += time.perf_counter() - t2
    return t_sel, t_back, [[n.visits for n in nodes] for nodes in created]


def _run_lean(values, terminal, leaf_value) -> tuple[float, float, list[list[int]]]:
    """The workload on lean Python nodes. Returns (select s, backup s, visit counts in creation order)."""
    rollouts, trees, k = values.shape
    p_sel = p_back = 0.0
    roots = [_Node(None) for _ in range(trees)]
    created = [[root] for root in roots]
    for r in range(rollouts):
        for b, root in enumerate(roots):
            t0 = time.perf_counter()
            leaf = _py_select(root)
            t1 = time.perf_counter()
            p_sel += t1 - t0
            if leaf is None:
                continue
            for j in range(k):
                leaf.children.append(_Node(leaf, 1, float(values[r, b, j]), bool(terminal[r, b, j])))
            created[b].extend(leaf.children)
            t2 = time.perf_counter()
            _py_backup(leaf, float(leaf_value[r, b]))
            p_back += time.perf_counter() - t2
    return p_sel, p_back, [[n.n for n in nodes] for nodes in created]


@functools.cache
def _jitted_kernels(rollouts: int):
    """(descend, expand, backup, backup then descend from the root in one call), jitted with the tree donated."""
    select = functools.partial(descend, c_puct=C_PUCT, unvisited=UnvisitedRule.ZERO, max_levels=rollouts + 1)

    def backup_select(tree, node, total, count, first, root):
        return select(backup(tree, node, total, count, first), root)

    fns = (select, expand, backup, backup_select)
    return tuple(jax.jit(f, donate_argnums=0, compiler_options=JIT_OPTIONS) for f in fns)


def _run_jitted(values, terminal, leaf_value, fused: bool, timed: bool = True):
    """The workload through the jitted kernels (tree donated, inputs staged on device once). With `fused`, the
    backup of a rollout and the descent of the next run as one call. Returns (tree, select + backup s, expand s);
    with `timed=False` two rollouts only (compilation)."""
    rollouts, trees, k = values.shape
    select, exp, back, back_select = _jitted_kernels(rollouts)
    staged = [
        [jnp.asarray(x) for x in rollout]
        for rollout in zip(values, terminal, terminal.astype(np.int8), leaf_value, strict=True)
    ][: rollouts if timed else 2]
    root, count, ones = jnp.zeros(trees, jnp.int32), jnp.full(trees, k, jnp.int32), jnp.ones((trees, k), bool)
    one = jnp.ones(trees, jnp.int32)  # backup count: trees whose descent was pruned pass node -1 (no-op)
    tree = jax.block_until_ready(init_tree(trees, 1 + k * rollouts, k))
    t0 = time.perf_counter()
    tree, leaf = select(tree, root)
    leaf = jax.block_until_ready(leaf)
    t_search, t_exp = time.perf_counter() - t0, 0.0
    for r, (value, term, kind, leaf_v) in enumerate(staged):
        t0 = time.perf_counter()
        tree, _ = exp(tree, leaf, count, term, kind, value, ones, value)
        tree = jax.block_until_ready(tree)
        t1 = time.perf_counter()
        if r + 1 == len(staged):
            tree = jax.block_until_ready(back(tree, leaf, leaf_v, one, leaf_v))
        elif fused:
            tree, leaf = back_select(tree, leaf, leaf_v, one, leaf_v, root)
            leaf = jax.block_until_ready(leaf)
        else:
            tree = jax.block_until_ready(back(tree, leaf, leaf_v, one, leaf_v))
            tree, leaf = select(tree, root)
            leaf = jax.block_until_ready(leaf)
        t_search, t_exp = t_search + time.perf_counter() - t1, t_exp + t1 - t0
    return tree, t_search, t_exp


def _call_floor_us(trees: int, capacity: int, k: int) -> float:
    """Microseconds of one jitted call that takes and returns a donated tree and does nothing else (min of 20x100)."""
    noop = jax.jit(lambda tree, node: (tree, node + 1), donate_argnums=0)
    state = {"tree": init_tree(trees, capacity, k)}
    node = jnp.zeros(trees, jnp.int32)

    def call():
        state["tree"], out = noop(state["tree"], node)
        jax.block_until_ready(out)

    call()
    best = math.inf
    for _ in range(20):
        t0 = time.perf_counter()
        for _ in range(100):
            call()
        best = min(best, (time.perf_counter() - t0) / 100)
    return 1e6 * best


def _line(name: str, seconds: list[float], per: float) -> float:
    """Prints the median and minimum (us per rollout); returns the median (s)."""
    print(f"  {name}: median {statistics.median(seconds) * per:.0f} us/rollout (min {min(seconds) * per:.0f})")
    return statistics.median(seconds)


def bench_kernels(trees: int, rollouts: int, k: int, repeats: int) -> None:
    values, terminal, leaf_value = _workload(trees, rollouts, k)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for fused in (False, True):
        _run_jitted(values, terminal, leaf_value, fused, timed=False)  # compile
    compile_s = time.perf_counter() - t0
    sep, fused, lean, oracle, share = [], [], [], [], {"jitted": [], "python": []}

    def timed(side: str, run):  # also records the CPU share of the run: CPU s / wall s, < 1 when starved
        w0, c0 = time.perf_counter(), time.process_time()
        out = run(values, terminal, leaf_value)
        share[side].append((time.process_time() - c0) / (time.perf_counter() - w0))
        return out

    for _ in range(repeats):  # interleaved: all sides see the same load
        gc.collect()
        for _ in range(JIT_RUNS):  # a jitted run is short (~1% of a python run): more samples of the load
            sep.append(_run_jitted(values, terminal, leaf_value, fused=False))
            fused.append(timed("jitted", functools.partial(_run_jitted, fused=True)))
        lean.append(_run_lean(values, terminal, leaf_value))
        oracle.append(timed("python", _run_oracle))
    tree = jax.device_get(sep[0][0])
    visits = [row[:size].tolist() for row, size in zip(tree.visit_count, tree.next_free, strict=True)]
    same = all(visits == run[2] for run in lean + oracle)
    same = same and all(np.array_equal(tree.stats, run[0].stats) for run in sep + fused)
    nodes = int(tree.next_free.sum())
    depth = tree.depth[tree.parent >= 0]
    per = 1e6 / rollouts
    print(
        f"trees={trees} rollouts={rollouts} K={k} nodes={nodes} "
        f"node depth mean {depth.mean():.2f} max {depth.max()} identical_trees={same}"
    )
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; {repeats} interleaved repeats "
        f"({JIT_RUNS} runs of each jitted variant, 1 of each python side per repeat)"
    )
    print(f"compile (excluded): {compile_s:.2f} s; select + backup of all {trees} trees:")
    k_sep = _line("jitted, descend and backup calls", [run[1] for run in sep], per)
    k_fused = _line("jitted, backup + next descent in one call", [run[1] for run in fused], per)
    _line("(jitted expand, not counted)", [run[2] for run in fused], per)
    p_med = _line("python, lean nodes", [sum(run[:2]) for run in lean], per)
    r_med = _line("python oracle (tests/test_search_oracle.py)", [sum(run[:2]) for run in oracle], per)
    floor = _call_floor_us(trees, 1 + k * rollouts, k)
    print(f"  floor: a jitted call passing the donated tree through does nothing in {floor:.0f} us")
    for name, kernel in (("separate calls", k_sep), ("fused", k_fused)):
        print(
            f"speed-up select+backup (medians), {name}: {r_med / kernel:.1f}x vs the python oracle, "
            f"{p_med / kernel:.1f}x vs lean python"
        )
    print(
        f"CPU share of a run (process CPU s / wall s, median): jitted fused {statistics.median(share['jitted']):.2f}, "
        f"python oracle {statistics.median(share['python']):.2f}"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def bench_driver(problems: int, rollouts: int, n: int, repeats: int) -> None:
    cfg = SearchConfig(rollouts=rollouts, samples_per_expansion=n, max_depth=8, batch_problems=problems)
    batch = [Problem(f"bench/{i}", f"Question {i}?", str(i % 3)) for i in range(problems)]
    kernels = TreeKernels.build(cfg)
    policy = RandomStepPolicy(weights=(4.0, 2.0, 0.5, 0.7, 0.2, 0.2))
    args = (cfg, SearchMode.TEST, policy, FakeExecutor(), BoxGrader(), HashPPM(), 0, kernels)
    BatchSearch(batch[:problems], *args).run()  # warm-up: compiles the kernels for this shape
    runs = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        search = BatchSearch(batch, *args).run()
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
    parser.add_argument("--rollouts", type=int, default=64)
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
    bench_kernels(args.trees, args.rollouts, args.children, args.repeats)
    if not args.skip_driver:
        bench_driver(problems=64, rollouts=8, n=8, repeats=args.repeats)


if __name__ == "__main__":
    main()
