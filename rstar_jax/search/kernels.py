"""Pure tree kernels with rStar semantics: select (UCT, one level or to a leaf), expand, backup.

Each kernel is written for ONE unbatched tree (fields `[N]`, `[N, K]`) and `jax.vmap`-ed over the B trees
(legend in `tree.py`). Nothing here is jitted: callers wrap with `jax.jit` (hyper-parameters bound with
`functools.partial`), so every shape compiles once.

Selection (rstar_reference.md Part A and Part B §4.2-4.3), from a node s:
- s has children or is terminal: pick the non-terminal child maximising
  `Q(c) + c_puct * sqrt(ln N(s) / N(c))`, Q = W / N; the exploration term is 0 when N(c) = 0 or N(s) = 0
  (rule `zero`, reference), or +inf for unvisited children (rule `inf`, classic UCT); ties go to the first child
  in creation order. No selectable child: s becomes terminal (`EXHAUSTED` unless it already was), result -1.
- s has no children and is not terminal: the result is s itself (it is to be expanded).
- s = -1 (inactive): -1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rstar_jax.config import UnvisitedRule
from rstar_jax.search.tree import TerminalKind, Tree

__all__ = ["backup", "descend", "expand", "select_level"]


def _select_one(tree: Tree, node: jnp.ndarray, c_puct: float, unvisited: UnvisitedRule):
    """_Unbatched_: one level of selection from `node` (scalar int32). Returns (next node, prune flag)."""
    safe = jnp.maximum(node, 0)
    kids = tree.children[safe]  # [K]
    kid = jnp.maximum(kids, 0)
    selectable = (kids >= 0) & ~tree.terminal[kid]
    n_parent = tree.visit_count[safe].astype(jnp.float32)
    n_kid = tree.visit_count[kid].astype(jnp.float32)
    q = jnp.where(n_kid > 0, tree.value_sum[kid] / jnp.maximum(n_kid, 1.0), 0.0)
    explore = c_puct * jnp.sqrt(jnp.log(jnp.maximum(n_parent, 1.0)) / jnp.maximum(n_kid, 1.0))
    unvisited_bonus = jnp.inf if unvisited is UnvisitedRule.INF else 0.0
    u = jnp.where(n_kid > 0, jnp.where(n_parent > 0, explore, 0.0), unvisited_bonus)
    score = jnp.where(selectable, q + u, -jnp.inf)
    best = jnp.argmax(score)  # first maximum: ties go to the first child
    any_selectable = jnp.any(selectable)
    go_down = (kids[0] >= 0) | tree.terminal[safe]  # children fill slots from 0: has children
    active = node >= 0
    nxt = jnp.where(go_down, jnp.where(any_selectable, kids[best], -1), node)
    nxt = jnp.where(active, nxt, -1)
    prune = active & go_down & ~any_selectable
    return nxt, prune


def _apply_prune(tree: Tree, node: jnp.ndarray, prune: jnp.ndarray) -> Tree:
    """_Unbatched_: mark `node` terminal (kind EXHAUSTED unless it already had a kind) where `prune`."""
    idx = jnp.where(prune, node, tree.capacity)  # out of range -> dropped
    safe = jnp.maximum(node, 0)
    was_terminal, old_kind = tree.terminal[safe], tree.terminal_kind[safe]
    kind = jnp.where(was_terminal, old_kind, jnp.int8(TerminalKind.EXHAUSTED))
    # Written values depend on the gathered old ones, so XLA updates the buffers in place (see `backup`).
    return tree.replace(
        terminal=tree.terminal.at[idx].set(was_terminal | prune, mode="drop"),
        terminal_kind=tree.terminal_kind.at[idx].set(kind, mode="drop"),
    )


def _select_level_one(tree: Tree, node: jnp.ndarray, c_puct: float, unvisited: UnvisitedRule):
    nxt, prune = _select_one(tree, node, c_puct, unvisited)
    return _apply_prune(tree, node, prune), nxt


def select_level(tree: Tree, node: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule) -> tuple[Tree, jnp.ndarray]:
    """One level of selection in every tree (module docstring rules).

    Args:
      tree: B trees.
      node: `[B]` int32 start node per tree, -1 for inactive trees.
      c_puct: exploration constant.
      unvisited: score rule for unvisited children.

    Returns:
      (tree with exhausted start nodes marked terminal, `[B]` int32 next node or -1).
    """
    fn = functools.partial(_select_level_one, c_puct=c_puct, unvisited=unvisited)
    return jax.vmap(fn)(tree, node)


def _descend_one(tree: Tree, node: jnp.ndarray, c_puct: float, unvisited: UnvisitedRule, max_levels: int):
    """_Unbatched_: repeat one-level selection until a node to expand, -1, or `max_levels` levels.

    The loop carries scalars only (the tree is read-only inside it); a descent prunes at most once, where it
    stops with -1, so the pruning scatter is applied once after the loop.
    """

    def cond(state):
        current, previous, level, _ = state
        return (current >= 0) & (current != previous) & (level < max_levels)

    def body(state):
        current, _, level, pruned = state
        nxt, prune = _select_one(tree, current, c_puct, unvisited)
        return nxt, current, level + 1, jnp.where(prune, current, pruned)

    start = (node, jnp.int32(-2), jnp.int32(0), jnp.int32(-1))
    leaf, _, _, pruned = jax.lax.while_loop(cond, body, start)
    return _apply_prune(tree, pruned, pruned >= 0), leaf


def descend(
    tree: Tree, node: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule, max_levels: int
) -> tuple[Tree, jnp.ndarray]:
    """Selection to the leaf: one-level selection repeated (pruning on the way) until every tree reaches a node to
    expand (the result equals its start), -1, or `max_levels` levels. Same arguments and results as
    `select_level`."""
    fn = functools.partial(_descend_one, c_puct=c_puct, unvisited=unvisited, max_levels=max_levels)
    return jax.vmap(fn)(tree, node)


def _expand_one(tree: Tree, node, count, terminal, kind, prior, update, value):
    """_Unbatched_: allocate `count` children of `node`; per-child fields `[K]`. Returns (tree, ids `[K]`)."""
    k = tree.max_children
    slots = jnp.arange(k, dtype=jnp.int32)
    valid = (slots < count) & (node >= 0)
    ids = jnp.where(valid, tree.next_free + slots, Tree.UNUSED)
    idx = jnp.where(valid, ids, tree.capacity)  # invalid slots scatter out of range and are dropped
    safe = jnp.maximum(node, 0)
    n = jnp.where(update, 1, 0).astype(jnp.int32)
    w = jnp.where(update, value, 0.0).astype(jnp.float32)
    tree = tree.replace(
        parent=tree.parent.at[idx].set(node, mode="drop"),
        depth=tree.depth.at[idx].set(tree.depth[safe] + 1, mode="drop"),
        visit_count=tree.visit_count.at[idx].set(n, mode="drop"),
        value_sum=tree.value_sum.at[idx].set(w, mode="drop"),
        value=tree.value.at[idx].set(w, mode="drop"),
        prior=tree.prior.at[idx].set(prior.astype(jnp.float32), mode="drop"),
        terminal=tree.terminal.at[idx].set(terminal, mode="drop"),
        terminal_kind=tree.terminal_kind.at[idx].set(kind.astype(jnp.int8), mode="drop"),
    )
    has = node >= 0
    row = jnp.where(has, safe, tree.capacity)
    tree = tree.replace(
        children=tree.children.at[row].set(ids, mode="drop"),
        num_children=tree.num_children.at[row].set(jnp.where(valid, 1, 0).sum(), mode="drop"),
        next_free=tree.next_free + jnp.where(valid, 1, 0).sum(),
    )
    return tree, ids


def expand(
    tree: Tree,
    node: jnp.ndarray,
    count: jnp.ndarray,
    terminal: jnp.ndarray,
    kind: jnp.ndarray,
    prior: jnp.ndarray,
    update: jnp.ndarray,
    value: jnp.ndarray,
) -> tuple[Tree, jnp.ndarray]:
    """Creates the children of one unexpanded node per tree, with their local statistics.

    Children get ids `next_free, next_free + 1, ...` (creation order = tag order). A child with `update` set
    receives one local update (N = 1, W = value, value = value): the PPM initialisation of a non-terminal child,
    a dead end's local -1, or an answer's own share of a backup (its ancestors get theirs from `backup`).
    The caller guarantees `next_free + count <= N` and `count <= K`.

    Args:
      tree: B trees.
      node: `[B]` int32 node to expand, -1 for trees not expanding.
      count: `[B]` int32 children to create (<= K).
      terminal, kind, prior, update, value: `[B, K]` per-child terminal flag, `TerminalKind` code, PPM score,
        local-update flag and value; slots >= count are ignored.

    Returns:
      (tree, `[B, K]` int32 new child ids, -1 in unused slots).
    """
    return jax.vmap(_expand_one)(tree, node, count, terminal, kind, prior, update, value)


def backup(tree: Tree, node: jnp.ndarray, total: jnp.ndarray, count: jnp.ndarray, first: jnp.ndarray) -> Tree:
    """Backs up terminal values from `node` to the root of each tree (`update_recursive`, Part B §4.1).

    Written batched rather than per tree and vmapped: a vmapped `while_loop` would carry (and `select` over)
    every `[B, N]` statistic at each level, while this loop carries `[B]` node ids and scatters B entries per
    level; it runs for the deepest path of the batch.

    Args:
      tree: B trees.
      node: `[B]` int32 first node to update (the parent of the new terminals), -1 for none.
      total: `[B]` float32 sum of the values backed up through `node` (summed by the caller in creation order).
      count: `[B]` int32 number of those values (N grows by it; 0 = nothing to do).
      first: `[B]` float32 the first of those values (becomes `value` of a node never updated before).

    Returns:
      The updated trees.
    """
    rows = jnp.arange(tree.batch_size)
    total, first = total.astype(jnp.float32), first.astype(jnp.float32)
    start = jnp.where(count > 0, node, -1)

    def cond(state):
        return jnp.any(state[0] >= 0)

    def body(state):
        current, n, w, v = state
        safe = jnp.maximum(current, 0)
        col = jnp.where(current >= 0, current, tree.capacity)  # finished rows scatter out of range: dropped
        old_n, old_w, old_v = n[rows, safe], w[rows, safe], v[rows, safe]
        # Writes are `set`s of values computed from the gathers above: the data dependency orders each read
        # before its in-place write, so XLA updates the [B, N] buffers in place instead of copying them.
        n = n.at[rows, col].set(old_n + count, mode="drop")
        w = w.at[rows, col].set(old_w + total, mode="drop")
        v = v.at[rows, col].set(jnp.where(old_n == 0, first, old_v), mode="drop")
        return jnp.where(current >= 0, tree.parent[rows, safe], -1), n, w, v

    _, n, w, v = jax.lax.while_loop(cond, body, (start, tree.visit_count, tree.value_sum, tree.value))
    return tree.replace(visit_count=n, value_sum=w, value=v)
