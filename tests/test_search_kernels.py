"""The tree kernels one rule at a time: UCT scoring, ties, pruning, expansion, backup; the tree's child ranges
against its parent links; one compile per shape over a whole search."""

import functools

import jax
import numpy as np
import pytest

from rstar_jax.config import SearchConfig, UnvisitedRule
from rstar_jax.data import Problem
from rstar_jax.search import BatchSearch, SearchMode, TerminalKind, TreeKernels, init_tree
from rstar_jax.search.kernels import Expansion, select, step
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy

K = 3


def _expansion(node, count=0, kind=None, values=None, update=None, total=0.0, backed=0, first=0.0):
    """An `Expansion` of B trees from per-tree lists (`kind`, `values`, `update`: `[B, K]`; None: zeros)."""
    b = len(node)
    zeros = np.zeros((b, K))
    return Expansion(
        node=np.asarray(node, np.int32),
        count=np.broadcast_to(np.asarray(count, np.int32), (b,)),
        kind=np.asarray(zeros if kind is None else kind, np.int8),
        prior=np.asarray(zeros if values is None else values, np.float32),
        update=np.asarray(zeros if update is None else update, bool),
        value=np.asarray(zeros if values is None else values, np.float32),
        total=np.broadcast_to(np.asarray(total, np.float32), (b,)),
        backed=np.broadcast_to(np.asarray(backed, np.int32), (b,)),
        first=np.broadcast_to(np.asarray(first, np.float32), (b,)),
    )


def _step(tree, expansion, current=None, rule=UnvisitedRule.ZERO):
    current = np.full(len(expansion.node), -1, np.int32) if current is None else np.asarray(current, np.int32)
    return step(tree, expansion, current, c_puct=2.0, unvisited=rule)


def _expand(tree, node, values=None, update=None, terminal=None):
    """Expands `node` of tree 0 (batch of 1) into K children with the given local updates; returns (tree, ids)."""
    kind = None if terminal is None else [np.where(terminal, int(TerminalKind.ANSWER), 0)]
    tree, ids, _, _ = _step(
        tree, _expansion([node], K, kind, None if values is None else [values], None if update is None else [update])
    )
    return tree, ids


def _backup(tree, node, total, count, first):
    """Backs up `count` values summing to `total` from `node` of tree 0 (a step that creates no child)."""
    return _step(tree, _expansion([node], total=total, backed=count, first=first))[0]


def _select(tree, node, rule=UnvisitedRule.ZERO, c=2.0):
    tree, nxt, _ = select(tree, np.array([node], np.int32), c_puct=c, unvisited=rule)
    return tree, nxt


def test_unexpanded_node_selects_itself_and_expand_allocates_in_order():
    tree = init_tree(1, 16, K)
    tree, nxt, leaf = select(tree, np.zeros(1, np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO)
    assert (int(nxt[0]), bool(leaf[0])) == (0, True)
    tree, ids = _expand(tree, 0)
    assert ids[0].tolist() == [1, 2, 3]
    assert tree.parent[0, 1:4].tolist() == [0, 0, 0] and tree.depth[0, 1:4].tolist() == [1, 1, 1]
    assert int(tree.next_free[0]) == 4 and (int(tree.first_child[0, 0]), int(tree.num_children[0, 0])) == (1, 3)
    tree, nxt, leaf = select(tree, np.zeros(1, np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO)
    assert (int(nxt[0]), bool(leaf[0])) == (1, True)  # a new child: the next leaf to expand


def test_unvisited_children_score_zero_by_default_and_inf_classically():
    tree = init_tree(1, 16, K)
    # child 1 visited with Q = -0.5 (PPM init), children 2 and 3 unvisited; parent N = 0 -> greedy on Q.
    tree, _ = _expand(tree, 0, values=[-0.5, 0, 0], update=[True, False, False])
    _, nxt = _select(tree, 0, UnvisitedRule.ZERO)
    assert int(nxt[0]) == 2  # 0 beats -0.5; tie 0 == 0 goes to the first (node 2)
    tree2, _ = _expand(init_tree(1, 16, K), 0, values=[0.25, 0, 0], update=[True, False, False])
    _, nxt = _select(tree2, 0, UnvisitedRule.ZERO)
    assert int(nxt[0]) == 1  # a visited child with Q > 0 beats unvisited ones under the reference rule
    _, nxt = _select(tree2, 0, UnvisitedRule.INF)
    assert int(nxt[0]) == 2  # classic UCT: unvisited first


def test_uct_uses_log_parent_visits_and_q_mean():
    tree = init_tree(1, 16, K)
    tree, _ = _expand(tree, 0, values=[-0.5, 0.25, 0.0], update=[True, True, False])
    # give the root N = 3 and child 2 two more visits of -1 -> Q(2) = (0.25 - 2) / 3
    tree = _backup(tree, 2, -2.0, 2, -1.0)
    n_root = int(tree.visit_count[0, 0])
    scores = [-0.5 + 2 * np.sqrt(np.log(n_root) / 1), (0.25 - 2) / 3 + 2 * np.sqrt(np.log(n_root) / 3), 0.0]
    _, nxt = _select(tree, 0)
    assert int(nxt[0]) == 1 + int(np.argmax(scores))


def test_all_children_terminal_prunes_the_node():
    tree = init_tree(1, 16, K)
    tree, _ = _expand(tree, 0, values=[1, -1, -1], update=[True] * 3, terminal=[True] * 3)
    tree, nxt = _select(tree, 0)
    assert int(nxt[0]) == -1
    assert bool(tree.terminal[0, 0]) and int(tree.terminal_kind[0, 0]) == TerminalKind.EXHAUSTED
    tree, nxt = _select(tree, 0)  # a pruned root stays inactive
    assert int(nxt[0]) == -1


def test_inactive_tree_is_left_alone():
    tree = init_tree(2, 8, K)
    tree, nxt, leaf = select(tree, np.array([-1, 0], np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO)
    assert nxt.tolist() == [-1, 0] and leaf.tolist() == [False, True] and not bool(tree.terminal.any())


def test_backup_climbs_to_the_root_and_keeps_the_first_value():
    tree = init_tree(1, 16, K)
    tree, _ = _expand(tree, 0, values=[0.5, 0, 0], update=[True, False, False])
    tree, _ = _expand(tree, 1)  # nodes 4, 5, 6 under node 1
    tree = _backup(tree, 4, 1.0, 1, 1.0)
    tree = _backup(tree, 4, -1.0, 1, -1.0)
    assert tree.visit_count[0, [4, 1, 0, 2]].tolist() == [2, 3, 2, 0]
    assert tree.value_sum[0, [4, 1, 0]].tolist() == [0.0, 0.5, 0.0]
    assert tree.value[0, [4, 1, 0]].tolist() == [1.0, 0.5, 1.0]  # value = first received, not the mean
    np.testing.assert_allclose(np.asarray(tree.q_values()[0, [4, 1]]), [0.0, 0.5 / 3], rtol=1e-6)


def test_zero_count_backup_changes_nothing():
    tree, _ = _expand(init_tree(1, 16, K), 0)
    after = _backup(tree, 1, 0.0, 0, 0.0)
    assert after.visit_count.tolist() == tree.visit_count.tolist()


def test_backup_through_a_terminal_node_keeps_it_terminal():
    tree, _ = _expand(init_tree(1, 16, K), 0, values=[1, -1, -1], update=[True] * 3, terminal=[True] * 3)
    tree, _ = _select(tree, 0)  # prunes the root
    tree = _backup(tree, 2, 0.5, 2, 0.25)
    assert bool(tree.terminal[0, 2]) and int(tree.terminal_kind[0, 2]) == TerminalKind.ANSWER
    assert bool(tree.terminal[0, 0]) and int(tree.terminal_kind[0, 0]) == TerminalKind.EXHAUSTED
    assert tree.visit_count[0, [2, 0]].tolist() == [3, 2] and tree.value_sum[0, [2, 0]].tolist() == [-0.5, 0.5]
    assert tree.value[0, [2, 0]].tolist() == [-1.0, 0.25]


@pytest.mark.parametrize("rule", list(UnvisitedRule))
def test_rows_are_independent(rule):
    """The same tree in different batch rows gives the same result whatever its neighbours hold."""
    base, _ = _expand(init_tree(1, 16, K), 0, values=[-0.25, 0.5, 0], update=[True, True, False])
    other, _ = _expand(init_tree(1, 16, K), 0, values=[1, 1, 1], update=[True] * 3, terminal=[True] * 3)
    both = jax.tree.map(lambda x, y: np.concatenate([np.asarray(x), np.asarray(y)]), base, other)
    run = functools.partial(select, c_puct=2.0, unvisited=rule)
    _, alone, _ = run(base, np.array([0], np.int32))
    _, batched, _ = run(both, np.array([0, 0], np.int32))
    assert int(batched[0]) == int(alone[0]) and int(batched[1]) == -1


def _random_tree(seed=0, batch=4, grow=8):
    """Random trees grown as the driver grows them: select down to a leaf, then a step that expands it with
    random children (70% terminal) and backs up their values; pruned (exhausted) nodes occur."""
    rng = np.random.default_rng(seed)
    tree = init_tree(batch, 64, K)
    for _ in range(grow):
        node = np.zeros(batch, np.int32)
        for _ in range(10):
            tree, nxt, leaf = select(tree, node, c_puct=2.0, unvisited=UnvisitedRule.ZERO)
            node = np.asarray(nxt)
            if np.asarray(leaf | (nxt < 0)).all():
                break
        vals = rng.choice([-1.0, -0.5, 0.5, 1.0], size=(batch, K)).astype(np.float32)
        term = rng.random((batch, K)) < 0.7
        first = np.where(term.any(1), vals[np.arange(batch), term.argmax(1)], 0)
        exp = _expansion(node, K, term, vals, term, np.where(term, vals, 0).sum(1), term.sum(1), first)
        tree = _step(tree, exp)[0]
    return tree


def test_child_ranges_are_the_parent_links():
    """first_child / num_children (what selection reads) and parent (what backup climbs) describe one tree."""
    host = jax.device_get(_random_tree())
    assert isinstance(host.visit_count, np.ndarray) and (host.terminal_kind == TerminalKind.EXHAUSTED).any()
    for b in range(4):
        used = int(host.next_free[b])
        for s in range(used):
            first, count = int(host.first_child[b, s]), int(host.num_children[b, s])
            linked = np.flatnonzero(host.parent[b, :used] == s).tolist()
            assert linked == (list(range(first, first + count)) if count else []), (b, s)
            assert (host.depth[b, linked] == host.depth[b, s] + 1).all()
        assert (host.parent[b, used:] == -1).all() and (host.visit_count[b, used:] == 0).all()


def test_host_copy_equals_device_tree():
    tree = _random_tree(seed=1)
    host = jax.device_get(tree)
    for name in ("visit_count", "value_sum", "value", "prior", "parent", "depth", "first_child", "num_children"):
        device, copy = np.asarray(getattr(tree, name)), getattr(host, name)
        assert device.dtype == copy.dtype and device.shape == (4, 64), name
        np.testing.assert_array_equal(device, copy, err_msg=name)
    np.testing.assert_array_equal(np.asarray(tree.terminal), host.terminal)
    np.testing.assert_array_equal(np.asarray(tree.q_values()), host.q_values())


def test_step_without_expansion_or_backup_is_a_select():
    tree = _random_tree(seed=2)
    start = np.array([0, 1, -1, 2], np.int32)
    a, ids, nxt_a, leaf_a = _step(tree, _expansion([-1] * 4), start, UnvisitedRule.INF)
    b, nxt_b, leaf_b = select(tree, start, c_puct=2.0, unvisited=UnvisitedRule.INF)
    assert (np.asarray(ids) == -1).all()
    assert np.asarray(nxt_a).tolist() == np.asarray(nxt_b).tolist()
    assert np.asarray(leaf_a).tolist() == np.asarray(leaf_b).tolist()
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_whole_search_compiles_each_kernel_once():
    """Batches with different contents and numbers of expanding trees reuse one compilation per kernel."""
    cfg = SearchConfig(rollouts=3, samples_per_expansion=3, max_depth=3, batch_problems=4)
    kernels = TreeKernels.build(cfg)
    for salt in range(2):
        problems = [Problem(f"c/{salt}/{i}", f"Q{salt}-{i}", "1") for i in range(4)]
        BatchSearch(
            problems, cfg, SearchMode.TEST, RandomStepPolicy(), FakeExecutor(), BoxGrader(), HashPPM(), 0, kernels
        ).run_rollouts()
    assert (kernels.select._cache_size(), kernels.step._cache_size()) == (1, 1)
