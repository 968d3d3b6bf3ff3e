"""Tree-search speed: jitted select + backup vs a plain-Python tree, and the driver's own overhead per expansion.

    python -m benchmarks.bench_search [--trees 1024] [--rollouts 64] [--children 8] [--skip-driver]
    python benchmarks/bench_search.py

Part 1 runs the same synthetic workload twice, with the jitted kernels (all trees in one call per operation) and
with a plain-Python object tree (one tree at a time, float64): every rollout descends each tree from the root by
UCT (reference rules: unvisited children score 0, exhausted subtrees are pruned) to an unexpanded node, expands it
into K children with random local values (some terminal), and backs up one random terminal value to the root.
Child values are multiples of 1/8, so both sides reach identical trees (checked). Reported: select + backup
seconds on each side (expansion is timed apart; minimum of `--repeats` runs per side, with the load average, as
the machine may be shared), per-rollout microseconds, the speed-up, and the compile time (excluded).

Part 2 runs the lock-step driver (`BatchSearch`) with instant stubs (random policy, fake executor, hash PPM) and
reports the driver's wall time minus the time inside the policy, executor, grader and PPM, per expansion.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import os
import sys
import time

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from rstar_jax.config import SearchConfig, UnvisitedRule  # noqa: E402
from rstar_jax.data import Problem  # noqa: E402
from rstar_jax.search import SearchMode, TreeKernels, backup, descend, expand, init_tree  # noqa: E402
from rstar_jax.search.driver import BatchSearch  # noqa: E402
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy  # noqa: E402

C_PUCT = 2.0


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


class _RefNode:
    """The reference's node style (`MCTSNode`: update with `inited`, methods for Q and the UCT score)."""

    def __init__(self, parent, c_puct=C_PUCT):
        self.parent, self.children, self.c_puct = parent, [], c_puct
        self.visit_count, self.value_sum, self.value, self.inited, self.is_terminal = 0, 0.0, 0.0, False, False

    def update(self, value):
        if not self.inited:
            self.value, self.inited = value, True
        self.visit_count += 1
        self.value_sum += value

    def update_recursive(self, value):
        self.update(value)
        if self.parent is not None:
            self.parent.update_recursive(value)

    def q_value(self):
        return self.value_sum / self.visit_count if self.visit_count > 0 else 0.0

    def puct(self):
        if self.parent is None or self.parent.visit_count == 0 or self.visit_count == 0:
            return self.q_value()
        return self.q_value() + self.c_puct * math.sqrt(math.log(self.parent.visit_count) / self.visit_count)


def _ref_select(node):
    """Reference-style descent: `selection` one level at a time, `select_child` by max puct, pruning."""
    while node.children or node.is_terminal:
        best, best_score = None, -math.inf
        for child in node.children:
            if child.is_terminal:
                continue
            score = child.puct()
            if score > best_score:
                best, best_score = child, score
        if best is None:
            node.is_terminal = True
            return None
        node = best
    return node


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


def _bench_reference_style(values, terminal, leaf_value) -> tuple[float, float, list[int]]:
    rollouts, trees, k = values.shape
    t_sel = t_back = 0.0
    roots = [_RefNode(None) for _ in range(trees)]
    for r in range(rollouts):
        for b, root in enumerate(roots):
            t0 = time.perf_counter()
            leaf = _ref_select(root)
            t1 = time.perf_counter()
            if leaf is None:
                t_sel += t1 - t0
                continue
            for j in range(k):
                child = _RefNode(leaf)
                child.update(float(values[r, b, j]))
                child.is_terminal = bool(terminal[r, b, j])
                leaf.children.append(child)
            t2 = time.perf_counter()
            leaf.update_recursive(float(leaf_value[r, b]))
            t3 = time.perf_counter()
            t_sel, t_back = t_sel + t1 - t0, t_back + t3 - t2
    return t_sel, t_back, [root.visit_count for root in roots]


def _run_jitted(values, terminal, leaf_value, timed: bool):
    """The workload through the jitted kernels (tree donated). Returns (tree, select s, expand s, backup s)."""
    rollouts, trees, k = values.shape
    select, exp, back = _jitted_kernels(rollouts)
    count = np.full(trees, k, np.int32)
    ones = np.ones((trees, k), bool)
    kinds = terminal.astype(np.int8)
    tree = init_tree(trees, 1 + k * rollouts, k)
    t_sel = t_back = t_exp = 0.0
    for r in range(rollouts):
        t0 = time.perf_counter()
        tree, leaf = select(tree, np.zeros(trees, np.int32))
        leaf = jax.block_until_ready(leaf)
        t1 = time.perf_counter()
        tree, _ = exp(tree, leaf, count, terminal[r], kinds[r], values[r], ones, values[r])
        tree = jax.block_until_ready(tree)
        t2 = time.perf_counter()
        n_up = (np.asarray(leaf) >= 0).astype(np.int32)
        tree = jax.block_until_ready(back(tree, leaf, leaf_value[r], n_up, leaf_value[r]))
        t3 = time.perf_counter()
        t_sel, t_exp, t_back = t_sel + t1 - t0, t_exp + t2 - t1, t_back + t3 - t2
        if not timed:
            break
    return tree, t_sel, t_exp, t_back


@functools.cache
def _jitted_kernels(rollouts: int):
    select = functools.partial(descend, c_puct=C_PUCT, unvisited=UnvisitedRule.ZERO, max_levels=rollouts + 1)
    return (
        jax.jit(select, donate_argnums=0),
        jax.jit(expand, donate_argnums=0),
        jax.jit(backup, donate_argnums=0),
    )


def _run_lean(values, terminal, leaf_value) -> tuple[float, float, float, list[int]]:
    """The workload on lean Python nodes. Returns (select s, expand s, backup s, root visit counts)."""
    rollouts, trees, k = values.shape
    p_sel = p_back = p_exp = 0.0
    roots = [_Node(None) for _ in range(trees)]
    for r in range(rollouts):
        for b, root in enumerate(roots):
            t0 = time.perf_counter()
            leaf = _py_select(root)
            t1 = time.perf_counter()
            if leaf is not None:
                for j in range(k):
                    v = float(values[r, b, j])
                    leaf.children.append(_Node(leaf, 1, v, bool(terminal[r, b, j])))
            t2 = time.perf_counter()
            if leaf is not None:
                _py_backup(leaf, float(leaf_value[r, b]))
            t3 = time.perf_counter()
            p_sel, p_exp, p_back = p_sel + t1 - t0, p_exp + t2 - t1, p_back + t3 - t2
    return p_sel, p_exp, p_back, [root.n for root in roots]


def _call_floor_us(trees: int, capacity: int, k: int) -> float:
    """Microseconds of one jitted call that takes and returns a donated tree and does nothing else (min of 20x100)."""
    noop = jax.jit(lambda tree, node: (tree, node + 1), donate_argnums=0)
    state = {"tree": init_tree(trees, capacity, k)}
    node = np.zeros(trees, np.int32)

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


def bench_kernels(trees: int, rollouts: int, k: int, repeats: int) -> None:
    values, terminal, leaf_value = _workload(trees, rollouts, k)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    _run_jitted(values, terminal, leaf_value, timed=False)  # compile
    compile_s = time.perf_counter() - t0
    jit_runs = [_run_jitted(values, terminal, leaf_value, timed=True) for _ in range(repeats)]
    lean_runs = [_run_lean(values, terminal, leaf_value) for _ in range(repeats)]
    ref_runs = [_bench_reference_style(values, terminal, leaf_value) for _ in range(repeats)]
    tree = jit_runs[0][0]
    k_sel, k_exp, k_back = (min(run[i] for run in jit_runs) for i in (1, 2, 3))
    p_sel, p_exp, p_back = (min(run[i] for run in lean_runs) for i in (0, 1, 2))
    r_sel, r_back = (min(run[i] for run in ref_runs) for i in (0, 1))
    root_n = np.asarray(tree.visit_count[:, 0]).tolist()
    same = all(root_n == run[3] for run in lean_runs) and all(root_n == run[2] for run in ref_runs)
    same = same and all(np.array_equal(tree.visit_count, run[0].visit_count) for run in jit_runs)
    nodes = int(np.asarray(tree.next_free).sum())
    depth = np.asarray(tree.depth)[np.asarray(tree.parent) >= 0]
    per = 1e6 / rollouts
    print(
        f"trees={trees} rollouts={rollouts} K={k} nodes={nodes} "
        f"node depth mean {depth.mean():.2f} max {depth.max()} identical_root_visits={same}"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; min of {repeats} runs per side")
    print(f"compile (select+expand+backup, excluded): {compile_s:.2f} s")
    print(
        f"jitted : select {k_sel:.4f} s  backup {k_back:.4f} s  (expand {k_exp:.4f} s); "
        f"per rollout (all {trees} trees): select {k_sel * per:.0f} us  backup {k_back * per:.0f} us"
    )
    floor = _call_floor_us(trees, 1 + k * rollouts, k)
    print(f"floor: one jitted call passing the donated tree through does nothing in {floor:.0f} us (2 calls a rollout)")
    print(f"python (lean nodes): select {p_sel:.3f} s  backup {p_back:.3f} s  (expand {p_exp:.3f} s)")
    print(f"python (reference-style nodes): select {r_sel:.3f} s  backup {r_back:.3f} s")
    print(
        f"speed-up select+backup vs lean python: {(p_sel + p_back) / (k_sel + k_back):.1f}x, "
        f"vs reference-style python: {(r_sel + r_back) / (k_sel + k_back):.1f}x "
        f"(100x needs select+backup <= {(p_sel + p_back) * per / 100:.0f} us per rollout vs lean)"
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
    for _ in range(repeats):  # the run with the least driver time is reported
        gc.collect()
        t0 = time.perf_counter()
        search = BatchSearch(batch, *args).run()
        wall = time.perf_counter() - t0
        outside = sum(v for key, v in search.timings.items() if key != "kernel_s")
        runs.append((wall - outside, wall, outside, search))
    own, wall, outside, search = min(runs, key=lambda run: run[0])
    print(
        f"driver: {problems} problems x {rollouts} rollouts x n={n}: {search.expansions} expansions, wall {wall:.2f} s"
        f" (best of {repeats})"
    )
    print(f"  in stubs (policy+executor+grader+ppm): {outside:.3f} s, kernels {search.timings['kernel_s']:.3f} s")
    print(f"  driver overhead per expansion (kernels + host bookkeeping): {1e6 * own / search.expansions:.0f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=1024)
    parser.add_argument("--rollouts", type=int, default=64)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the minimum is reported")
    parser.add_argument("--skip-driver", action="store_true")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs")
    bench_kernels(args.trees, args.rollouts, args.children, args.repeats)
    if not args.skip_driver:
        bench_driver(problems=64, rollouts=8, n=8, repeats=args.repeats)


if __name__ == "__main__":
    main()
