"""Pure tree kernels with rStar semantics: select one level, and the search step (expand, backup, select).

Each rule is written for ONE tree (every field `[N]`, legend in `tree.py`) and `jax.vmap`-ed over the B trees;
the backup's climb to the root is one `while_loop` around a vmapped level. Nothing here is jitted: the driver
wraps `select` and `step` with `jax.jit` (hyper-parameters bound, the tree donated), so every shape compiles once.

Selection (rstar_reference.md Part A and Part B §4.2-4.3), from a node s:
- s has children or is terminal: pick the non-terminal child maximising
  `Q(c) + c_puct * sqrt(ln N(s) / N(c))`, Q = W / N; the exploration term is 0 when N(c) = 0 or N(s) = 0
  (rule `zero`, reference), or +inf for unvisited children (rule `inf`, classic UCT); ties go to the first child
  in creation order. No selectable child: s becomes terminal (`EXHAUSTED` unless it already was), result -1.
- s has no children and is not terminal: the result is s itself (it is to be expanded).
- s = -1 (inactive): -1.

Expansion creates all children of a node at once (ids `next_free, next_free + 1, ...`, creation order = tag
order). A child with `update` set receives one local update (N = 1, W = value, value = value): the PPM
initialisation of a non-terminal child, a dead end's local -1, or an answer's own share of a backup. The backup
(`update_recursive`, Part B §4.1) then adds the new terminals' values to the expanded node and its ancestors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from rstar_jax.config import UnvisitedRule
from rstar_jax.search.tree import TerminalKind, Tree, set_nodes

__all__ = ["Expansion", "select", "step"]


@struct.dataclass(frozen=True)
class Expansion:
    """What the host hands one search step: per tree, the node to expand, its children and the values to back up.

    Attributes:
      node: `[B]` int32 node to expand (and to back up from), -1 for trees not expanding.
      count: `[B]` int32 children to create (<= K; the caller guarantees `next_free + count <= N`); with 0 the
        step only backs up from `node`.
      kind: `[B, K]` int8 `TerminalKind` of each child; slots >= count are ignored.
      prior: `[B, K]` float32 PPM score of each child (0 when none was computed).
      update: `[B, K]` bool whether a child gets a local update; value: `[B, K]` float32 its value.
      total: `[B]` float32 sum of the values backed up through `node` (summed by the caller in creation order).
      backed: `[B]` int32 number of those values (N grows by it; 0 = no backup).
      first: `[B]` float32 the first of those values (becomes `value` of a node never updated before).
    """

    node: jnp.ndarray
    count: jnp.ndarray
    kind: jnp.ndarray
    prior: jnp.ndarray
    update: jnp.ndarray
    value: jnp.ndarray
    total: jnp.ndarray
    backed: jnp.ndarray
    first: jnp.ndarray


def _select_one(tree: Tree, node, c_puct: float, unvisited: UnvisitedRule):
    """_One tree_: (tree with `node` marked terminal if pruned, next node, whether next is a leaf to expand)."""
    s = jnp.maximum(node, 0)
    first, count = tree.first_child[s], tree.num_children[s]
    slots = jnp.arange(tree.max_children, dtype=jnp.int32)
    kids = jnp.clip(first + slots, 0, tree.capacity - 1)  # [K]
    n_kid = tree.visit_count[kids].astype(jnp.float32)
    n_parent = tree.visit_count[s].astype(jnp.float32)
    q = jnp.where(n_kid > 0, tree.value_sum[kids] / jnp.maximum(n_kid, 1.0), 0.0)
    explore = c_puct * jnp.sqrt(jnp.log(jnp.maximum(n_parent, 1.0)) / jnp.maximum(n_kid, 1.0))
    bonus = jnp.inf if unvisited is UnvisitedRule.INF else 0.0
    score = q + jnp.where(n_kid > 0, jnp.where(n_parent > 0, explore, 0.0), bonus)
    selectable = (slots < count) & (tree.terminal_kind[kids] == TerminalKind.NONE)
    best = first + jnp.argmax(jnp.where(selectable, score, -jnp.inf))  # argmax: the first of equal scores
    kind = tree.terminal_kind[s]
    go_down = (count > 0) | (kind != TerminalKind.NONE)
    found = jnp.any(selectable)
    nxt = jnp.where(node < 0, -1, jnp.where(go_down, jnp.where(found, best, -1), s))
    pruned = (node >= 0) & go_down & ~found
    exhausted = jnp.where(kind == TerminalKind.NONE, jnp.int8(TerminalKind.EXHAUSTED), kind)
    tree = set_nodes(tree, jnp.where(pruned, s, tree.capacity), terminal_kind=exhausted)
    leaf = (nxt >= 0) & (tree.num_children[jnp.maximum(nxt, 0)] == 0)
    return tree, nxt, leaf


def select(tree: Tree, node: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule):
    """One level of selection in every tree (module docstring rules).

    Args:
      tree: B trees.
      node: `[B]` int32 start node per tree, -1 for inactive trees.
      c_puct: exploration constant.
      unvisited: score rule for unvisited children.

    Returns:
      (tree with pruned start nodes marked terminal, `[B]` int32 next node or -1, `[B]` bool whether the next
      node is a leaf: no children, not terminal, to be expanded).
    """
    one = functools.partial(_select_one, c_puct=c_puct, unvisited=unvisited)
    return jax.vmap(one)(tree, node)


def _expand_one(tree: Tree, node, count, kind, prior, update, value):
    """_One tree_: creates `count` children of `node` (per-child fields `[K]`). Returns (tree, ids `[K]`)."""
    slots = jnp.arange(tree.max_children, dtype=jnp.int32)
    valid = (slots < count) & (node >= 0)
    ids = jnp.where(valid, tree.next_free + slots, Tree.UNUSED)
    added = jnp.sum(valid, dtype=jnp.int32)
    local = jnp.where(update, value, 0.0)
    tree = set_nodes(
        tree,
        jnp.where(valid, ids, tree.capacity),  # unused slots write out of range: dropped
        visit_count=update.astype(jnp.int32),
        value_sum=local,
        value=local,
        prior=prior,
        parent=jnp.full_like(slots, node),
        depth=jnp.full_like(slots, tree.depth[jnp.maximum(node, 0)] + 1),
        terminal_kind=kind.astype(jnp.int8),
    )
    tree = set_nodes(tree, jnp.where(added > 0, node, tree.capacity), first_child=tree.next_free, num_children=added)
    return tree.replace(next_free=tree.next_free + added), ids


def _backup_level(tree: Tree, node, total, backed, first):
    """_One tree_: one update of `node` (-1: none). Returns (tree, the parent of node)."""
    s = jnp.maximum(node, 0)
    n = tree.visit_count[s]
    tree = set_nodes(
        tree,
        jnp.where(node >= 0, s, tree.capacity),
        visit_count=n + backed,
        value_sum=tree.value_sum[s] + total,
        value=jnp.where(n == 0, first, tree.value[s]),
    )
    return tree, jnp.where(node >= 0, tree.parent[s], -1)


def step(tree: Tree, expansion: Expansion, current: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule):
    """One search step: expand and back up (`expansion`), then select one level from `current` in every tree.

    The backup climbs from `expansion.node` to the root, all trees together in one `while_loop` that runs for
    the deepest path of the batch.

    Returns:
      (tree, `[B, K]` int32 new child ids (-1 in unused slots), then `select`'s next node and leaf flag `[B]`).
    """
    e = expansion
    tree, ids = jax.vmap(_expand_one)(tree, e.node, e.count, e.kind, e.prior, e.update, e.value)
    level = jax.vmap(_backup_level)

    def climb(carry):
        tree, node = carry
        return level(tree, node, e.total, e.backed, e.first)

    start = jnp.where(e.backed > 0, e.node, -1).astype(jnp.int32)
    tree, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[1] >= 0), climb, (tree, start))
    tree, nxt, leaf = select(tree, current, c_puct=c_puct, unvisited=unvisited)
    return tree, ids, nxt, leaf
