"""The tree kernels one rule at a time: UCT scoring, ties, pruning, expand, backup, descend; one compile per shape."""

import functools

import jax
import numpy as np
import pytest

from rstar_jax.config import UnvisitedRule
from rstar_jax.search import TerminalKind, backup, descend, expand, init_tree, select_level

K = 3


def _expand(tree, node, values=None, update=None, terminal=None, kind=None):
    """Expands `node` of tree 0 (batch of 1) into K children with the given local updates."""
    values = np.zeros(K, np.float32) if values is None else np.asarray(values, np.float32)
    update = np.zeros(K, bool) if update is None else np.asarray(update)
    terminal = np.zeros(K, bool) if terminal is None else np.asarray(terminal)
    kind = np.where(terminal, int(TerminalKind.ANSWER), 0).astype(np.int8) if kind is None else np.asarray(kind)
    return expand(
        tree,
        np.array([node], np.int32),
        np.array([K], np.int32),
        terminal[None],
        kind[None],
        values[None],
        update[None],
        values[None],
    )


def _backup(tree, node, total, count, first):
    """Backs up `count` values summing to `total` from `node` of tree 0."""
    arrays = (np.array([node], np.int32), np.array([total], np.float32), np.array([count], np.int32))
    return backup(tree, *arrays, np.array([first], np.float32))


def _select(tree, node, rule=UnvisitedRule.ZERO, c=2.0):
    return select_level(tree, np.array([node], np.int32), c_puct=c, unvisited=rule)


def test_unexpanded_node_selects_itself_and_expand_allocates_in_order():
    tree = init_tree(1, 16, K)
    tree, nxt = _select(tree, 0)
    assert int(nxt[0]) == 0
    tree, ids = _expand(tree, 0)
    assert ids[0].tolist() == [1, 2, 3]
    assert tree.parent[0, 1:4].tolist() == [0, 0, 0] and tree.depth[0, 1:4].tolist() == [1, 1, 1]
    assert int(tree.next_free[0]) == 4 and int(tree.num_children[0, 0]) == 3


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
    tree, nxt = select_level(tree, np.array([-1, 0], np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO)
    assert nxt.tolist() == [-1, 0] and not bool(tree.terminal.any())


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


def test_descend_equals_repeated_select_level():
    rng = np.random.default_rng(0)
    tree = init_tree(4, 64, K)
    for _ in range(6):  # grow random trees: expand the node descend reaches, with random local values
        tree, leaf = descend(tree, np.zeros(4, np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO, max_levels=10)
        vals = rng.choice([-1.0, -0.5, 0.5, 1.0], size=(4, K)).astype(np.float32)
        term = rng.random((4, K)) < 0.3
        tree, _ = expand(
            tree,
            np.asarray(leaf),
            np.full(4, K, np.int32),
            term,
            term.astype(np.int8),
            vals,
            np.ones((4, K), bool),
            vals,
        )
    a, leaf_a = descend(tree, np.zeros(4, np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO, max_levels=10)
    b, node = tree, np.zeros(4, np.int32)
    for _ in range(10):
        b, nxt = select_level(b, node, c_puct=2.0, unvisited=UnvisitedRule.ZERO)
        nxt = np.asarray(nxt)
        if (nxt == node).all() or (nxt < 0).all():
            node = nxt
            break
        node = np.where(nxt == node, node, nxt)
    assert np.asarray(leaf_a).tolist() == node.tolist()
    assert a.terminal.tolist() == b.terminal.tolist()


def test_one_compile_per_shape():
    traces = []

    def counted(tree, node):
        traces.append(1)
        return select_level(tree, node, c_puct=2.0, unvisited=UnvisitedRule.ZERO)

    jitted = jax.jit(counted)
    tree = init_tree(3, 8, K)
    for start in ([0, 0, 0], [0, -1, 0], [-1, -1, 0]):
        tree, _ = jitted(tree, np.array(start, np.int32))
    assert len(traces) == 1


@pytest.mark.parametrize("rule", list(UnvisitedRule))
def test_rows_are_independent(rule):
    """The same tree in different batch rows gives the same result whatever its neighbours hold."""
    base, _ = _expand(init_tree(1, 16, K), 0, values=[-0.25, 0.5, 0], update=[True, True, False])
    other, _ = _expand(init_tree(1, 16, K), 0, values=[1, 1, 1], update=[True] * 3, terminal=[True] * 3)
    both = jax.tree.map(lambda x, y: np.concatenate([np.asarray(x), np.asarray(y)]), base, other)
    select = functools.partial(select_level, c_puct=2.0, unvisited=rule)
    _, alone = select(base, np.array([0], np.int32))
    _, batched = select(both, np.array([0, 0], np.int32))
    assert int(batched[0]) == int(alone[0]) and int(batched[1]) == -1


def _random_tree(seed=0, batch=4, grow=8):
    """Random trees grown by descend + expand + backup, with pruned (exhausted) nodes."""
    rng = np.random.default_rng(seed)
    tree = init_tree(batch, 64, K)
    for _ in range(grow):
        tree, leaf = descend(tree, np.zeros(batch, np.int32), c_puct=2.0, unvisited=UnvisitedRule.ZERO, max_levels=10)
        vals = rng.choice([-1.0, -0.5, 0.5, 1.0], size=(batch, K)).astype(np.float32)
        term = rng.random((batch, K)) < 0.7
        leaf = np.asarray(leaf)
        tree, _ = expand(tree, leaf, np.full(batch, K, np.int32), term, term.astype(np.int8), vals, term, vals)
        total = np.where(term, vals, 0).sum(1).astype(np.float32)
        count = term.sum(1).astype(np.int32)
        first = np.where(term.any(1), vals[np.arange(batch), term.argmax(1)], 0).astype(np.float32)
        tree = backup(tree, leaf, total, count, first)
    return tree


def test_host_copy_views_equal_device_views():
    tree = _random_tree()
    host = jax.device_get(tree)
    assert isinstance(host.stats, np.ndarray) and bool(np.asarray(tree.terminal_kind == TerminalKind.EXHAUSTED).any())
    for name in ("parent", "depth", "visit_count", "value_sum", "value", "prior", "terminal", "terminal_kind"):
        device, copy = np.asarray(getattr(tree, name)), getattr(host, name)
        assert device.dtype == copy.dtype and device.shape == (4, 64), name
        np.testing.assert_array_equal(device, copy, err_msg=name)
    np.testing.assert_array_equal(np.asarray(tree.children), host.children)
    np.testing.assert_array_equal(np.asarray(tree.num_children), host.num_children)
    np.testing.assert_array_equal(np.asarray(tree.q_values()), host.q_values())
    assert tree.children.shape == (4, 64, K) and host.visit_count.dtype == np.int32 and host.terminal.dtype == bool
    # children are consecutive ids, their parent is the node, and parents are never unused
    for b in range(4):
        for s in range(int(host.next_free[b])):
            kids = host.children[b, s][host.children[b, s] >= 0]
            assert kids.tolist() == list(range(kids[0], kids[0] + len(kids))) if len(kids) else True
            assert (host.parent[b, kids] == s).all() and (host.depth[b, kids] == host.depth[b, s] + 1).all()


def test_backup_through_a_terminal_node_keeps_it_terminal():
    tree, _ = _expand(init_tree(1, 16, K), 0, values=[1, -1, -1], update=[True] * 3, terminal=[True] * 3)
    tree, _ = _select(tree, 0)  # prunes the root
    tree = _backup(tree, 2, 0.5, 2, 0.25)
    assert bool(tree.terminal[0, 2]) and int(tree.terminal_kind[0, 2]) == TerminalKind.ANSWER
    assert bool(tree.terminal[0, 0]) and int(tree.terminal_kind[0, 0]) == TerminalKind.EXHAUSTED
    assert tree.visit_count[0, [2, 0]].tolist() == [3, 2] and tree.value_sum[0, [2, 0]].tolist() == [-0.5, 0.5]
    assert tree.value[0, [2, 0]].tolist() == [-1.0, 0.25]


def test_descend_one_level_equals_select_level():
    tree = _random_tree(seed=1)
    start = np.array([0, 1, -1, 2], np.int32)
    a, one = descend(tree, start, c_puct=2.0, unvisited=UnvisitedRule.INF, max_levels=1)
    b, level = select_level(tree, start, c_puct=2.0, unvisited=UnvisitedRule.INF)
    assert np.asarray(one).tolist() == np.asarray(level).tolist()
    np.testing.assert_array_equal(np.asarray(a.stats), np.asarray(b.stats))
    np.testing.assert_array_equal(np.asarray(a.links), np.asarray(b.links))
