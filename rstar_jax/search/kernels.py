"""Pure tree kernels with rStar semantics: select (UCT, one level or to a leaf), expand, backup.

`expand` is written for ONE unbatched tree (tables `[N, 4]`, `[N, 5]`) and `jax.vmap`-ed over the B trees
(legend and table layout in `tree.py`). Selection and backup are written batched on the flattened tables
(`[B*N, 4]`, `[B*N, 5]`; node s of tree b is row `b * N + s`), all trees advancing together in one
`while_loop`: per level a tree reads its node's `stats` row and the contiguous `[K, 4]` window of its
children's rows. Nothing here is jitted: callers wrap with `jax.jit` (hyper-parameters bound with
`functools.partial`, the tree donated, `compiler_options=JIT_OPTIONS`), so every shape compiles once.

Selection (rstar_reference.md Part A and Part B §4.2-4.3), from a node s:
- s has children or is terminal: pick the non-terminal child maximising
  `Q(c) + c_puct * sqrt(ln N(s) / N(c))`, Q = W / N; the exploration term is 0 when N(c) = 0 or N(s) = 0
  (rule `zero`, reference), or +inf for unvisited children (rule `inf`, classic UCT); ties go to the first child
  in creation order. No selectable child: s becomes terminal (`EXHAUSTED` unless it already was), result -1.
- s has no children and is not terminal: the result is s itself (it is to be expanded).
- s = -1 (inactive): -1.

XLA:CPU notes (measured with benchmarks/bench_search.py): the cost is per op (~0.3 us each) and per gathered
element, so a selection level is 2 gathers, 1 fused op and the loop test. The K children are scored as K
unrolled `[B]` steps (vectorised over trees, one fused op) rather than `[B, K]` + argmax (a slow reduction);
a level returns a single `[B]` int32 state (`_DONE` / pruned codes below), since XLA splits an op with
several outputs and duplicates or unfuses its divisions and square roots (2-3x slower); a descent that picks
a child without children stops there (the child's flags are in the window) instead of spending one more level.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rstar_jax.config import UnvisitedRule
from rstar_jax.search.tree import (
    CODE,
    COUNT,
    DEPTH,
    EXPANDED_BIT,
    FIRST,
    KIND,
    PARENT,
    PRIOR,
    TERMINAL_BIT,
    VALUE,
    VISIT_SHIFT,
    TerminalKind,
    Tree,
    W,
    as_bits,
    as_float,
    encode,
)

__all__ = ["JIT_OPTIONS", "backup", "descend", "expand", "select_level"]

# `jax.jit(..., compiler_options=JIT_OPTIONS)` for these kernels: on XLA:CPU, 512-bit vectors where the CPU has
# them (the fused per-level scoring is vectorised over trees; ~10% of select + backup); ignored elsewhere.
JIT_OPTIONS = {"xla_cpu_prefer_vector_width": 512}

_DONE = 1 << 30  # descent state: s in [0, _DONE) moving at node s; s >= _DONE stopped at s - _DONE;
#                  -1 inactive; s <= -2 stopped after pruning node -(s + 2)


def _block(table: jnp.ndarray, row: jnp.ndarray, rows: int, col: int, cols: int) -> jnp.ndarray:
    """`[B, rows, cols]` blocks `table[row[b] : row[b] + rows, col : col + cols]` of a `[M, C]` table (in range)."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(), start_index_map=(0, 1))
    start = jnp.stack([row, jnp.full_like(row, col)], axis=1)
    mode = jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
    return jax.lax.gather(table, start, dims, (rows, cols), mode=mode)


def _put(table: jnp.ndarray, row: jnp.ndarray, col: int, values: jnp.ndarray) -> jnp.ndarray:
    """`table[row[b], col : col + U] = values[b]` for `[B, U]` values; rows out of range (e.g. M) are dropped."""
    dims = jax.lax.ScatterDimensionNumbers(
        update_window_dims=(1,), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0, 1)
    )
    start = jnp.stack([row, jnp.full_like(row, col)], axis=1)
    mode = jax.lax.GatherScatterMode.FILL_OR_DROP
    return jax.lax.scatter(table, start, values, dims, mode=mode, unique_indices=True)


def _flat(tree: Tree):
    """(`[B*N, 4]` stats, `[B*N, 5]` links, `[B]` row of each tree's node 0)."""
    b, n, _ = tree.stats.shape
    base = jnp.arange(b, dtype=jnp.int32) * n
    return tree.stats.reshape(b * n, -1), tree.links.reshape(b * n, -1), base


def _rows_of(stats, base, node, capacity: int) -> jnp.ndarray:
    """`[B, 4]` stats rows of `node` (`[B]`, clipped into range)."""
    return _block(stats, base + jnp.clip(node, 0, capacity - 1), 1, 0, 4)[:, 0]


def _step(stats, base, state, capacity: int, k: int, c_puct: float, unvisited: UnvisitedRule):
    """One level of selection on the `[B]` descent state (`_DONE` codes); finished trees keep their state.

    A moving tree at node s: s without children and not terminal -> stopped at s; best child c -> moving at c,
    or stopped at c if c has no children; no selectable child -> pruned at s.
    """
    width = min(k, capacity)
    own = _rows_of(stats, base, state, capacity)  # [B, 4]
    code, first, count = own[:, CODE], own[:, FIRST], own[:, COUNT]
    n_parent = (code >> VISIT_SHIFT).astype(jnp.float32)
    start = jnp.clip(first, 0, capacity - width)  # window of `width` rows holding the children
    window = _block(stats, base + start, width, 0, 4)  # [B, W, 4]
    log_parent = jnp.log(jnp.maximum(n_parent, 1.0))
    bonus = jnp.inf if unvisited is UnvisitedRule.INF else 0.0
    lo, hi = first - start, first + count - start  # window slots of the children
    best, best_score, best_code = jnp.full_like(state, -1), jnp.zeros_like(n_parent), code
    for j in range(width):  # unrolled over children: [B] vectors, one fused loop over trees
        kid = window[:, j]
        n_kid = (kid[:, CODE] >> VISIT_SHIFT).astype(jnp.float32)
        q = jnp.where(n_kid > 0, as_float(kid[:, W]) / jnp.maximum(n_kid, 1.0), 0.0)
        explore = c_puct * jnp.sqrt(log_parent / jnp.maximum(n_kid, 1.0))
        score = q + jnp.where(n_kid > 0, jnp.where(n_parent > 0, explore, 0.0), bonus)
        selectable = (j >= lo) & (j < hi) & ((kid[:, CODE] & TERMINAL_BIT) == 0)
        better = selectable & ((best < 0) | (score > best_score))  # strict: ties keep the first child
        best = jnp.where(better, j, best)
        best_score = jnp.where(better, score, best_score)
        best_code = jnp.where(better, kid[:, CODE], best_code)
    go_down = (code & (EXPANDED_BIT | TERMINAL_BIT)) != 0  # has children or is terminal
    child = start + best
    leaf = (best_code & EXPANDED_BIT) == 0  # a picked child without children ends the descent at once
    moved = jnp.where(best >= 0, jnp.where(leaf, child + _DONE, child), -2 - state)
    moving = (state >= 0) & (state < _DONE)
    return jnp.where(moving, jnp.where(go_down, moved, state + _DONE), state)


def _finish(tree: Tree, stats, links, base, state) -> tuple[Tree, jnp.ndarray]:
    """Decodes the descent state: (tree with the pruned node of each tree marked terminal, `[B]` result)."""
    capacity = tree.capacity
    result = jnp.where(state >= _DONE, state - _DONE, jnp.where(state >= 0, state, -1))
    pruned = jnp.where(state <= -2, -2 - state, -1)
    row = base + jnp.clip(pruned, 0, capacity - 1)
    drop = jnp.where(pruned >= 0, row, stats.shape[0])
    code = _block(stats, row, 1, CODE, 1)[:, 0]  # [B, 1]
    was_terminal = (code & TERMINAL_BIT) != 0
    kind = jnp.where(was_terminal, _block(links, row, 1, KIND, 1)[:, 0], int(TerminalKind.EXHAUSTED))
    stats = _put(stats, drop, CODE, code | TERMINAL_BIT)
    links = _put(links, drop, KIND, kind)  # a node already terminal keeps its kind
    tree = tree.replace(stats=stats.reshape(tree.stats.shape), links=links.reshape(tree.links.shape))
    return tree, result


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
    stats, links, base = _flat(tree)
    state = jnp.where(node >= 0, node, -1).astype(jnp.int32)
    state = _step(stats, base, state, tree.capacity, tree.max_children, c_puct, unvisited)
    return _finish(tree, stats, links, base, state)


def descend(
    tree: Tree, node: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule, max_levels: int
) -> tuple[Tree, jnp.ndarray]:
    """Selection to the leaf: one-level selection repeated (pruning on the way) until every tree reaches a node to
    expand (the result equals its start), -1, or `max_levels` levels. Same arguments and results as
    `select_level`.

    All B trees advance together in one `while_loop` over levels that stops when every tree has finished; the
    loop carries the `[B]` descent state and reads the tables only. A descent that picks a child without
    children stops there at once. A descent prunes at most once (where it stops with -1), so the pruning
    scatter runs once after the loop.
    """
    stats, links, base = _flat(tree)
    capacity, k = tree.capacity, tree.max_children

    def cond(carry):
        _, level, running = carry
        return running & (level < max_levels)

    def body(carry):
        state, level, _ = carry
        state = _step(stats, base, state, capacity, k, c_puct, unvisited)
        return state, level + 1, jnp.any((state >= 0) & (state < _DONE))

    state = jnp.where(node >= 0, node, -1).astype(jnp.int32)
    state, _, _ = jax.lax.while_loop(cond, body, (state, jnp.int32(0), jnp.any(state >= 0)))
    return _finish(tree, stats, links, base, state)


def _expand_one(tree: Tree, node, count, terminal, kind, prior, update, value):
    """_Unbatched_: allocate `count` children of `node`; per-child fields `[K]`. Returns (tree, ids `[K]`)."""
    k, capacity = tree.max_children, tree.capacity
    slots = jnp.arange(k, dtype=jnp.int32)
    valid = (slots < count) & (node >= 0)
    ids = jnp.where(valid, tree.next_free + slots, Tree.UNUSED)
    rows = jnp.where(valid, ids, capacity)  # invalid slots scatter out of range and are dropped
    safe = jnp.maximum(node, 0)
    w = as_bits(jnp.where(update, value, 0.0))
    code = encode(jnp.where(update, 1, 0), terminal, jnp.zeros_like(valid))
    none = jnp.full_like(slots, Tree.UNUSED)
    new_stats = jnp.stack([code, w, none, jnp.zeros_like(slots)], axis=-1)  # [K, 4]
    columns = {
        PARENT: jnp.full_like(slots, node),
        VALUE: w,
        DEPTH: jnp.full_like(slots, tree.links[safe, DEPTH] + 1),
        PRIOR: as_bits(prior),
        KIND: kind.astype(jnp.int32),
    }
    new_links = jnp.stack([columns[c] for c in sorted(columns)], axis=-1)  # [K, 5]
    added = jnp.where(valid, 1, 0).sum()
    own = tree.stats[safe]  # [4]
    own_code = (own[CODE] & ~EXPANDED_BIT) | jnp.where(added > 0, EXPANDED_BIT, 0)
    own = jnp.stack([own_code, own[W], jnp.where(added > 0, tree.next_free, Tree.UNUSED), added])
    # the parent's row first: its update reads the table, so XLA scatters in place instead of copying the table
    stats = tree.stats.at[jnp.where(node >= 0, safe, capacity)].set(own, mode="drop")
    stats = stats.at[rows].set(new_stats, mode="drop")
    tree = tree.replace(stats=stats, links=tree.links.at[rows].set(new_links, mode="drop"))
    return tree.replace(next_free=tree.next_free + added), ids


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

    One `while_loop` for the batch: it carries `[B]` node ids and the two flattened tables (updated in place),
    reads one `stats` and one `links` block per tree and level, and runs for the deepest path of the batch.

    Args:
      tree: B trees.
      node: `[B]` int32 first node to update (the parent of the new terminals), -1 for none.
      total: `[B]` float32 sum of the values backed up through `node` (summed by the caller in creation order).
      count: `[B]` int32 number of those values (N grows by it; 0 = nothing to do).
      first: `[B]` float32 the first of those values (becomes `value` of a node never updated before).

    Returns:
      The updated trees.
    """
    stats, links, base = _flat(tree)
    capacity = tree.capacity
    count = jnp.asarray(count, jnp.int32)
    total, first = jnp.asarray(total, jnp.float32), as_bits(first)
    start = jnp.where(count > 0, node, -1).astype(jnp.int32)

    def body(carry):
        current, stats, links, _ = carry
        row = base + jnp.clip(current, 0, capacity - 1)  # finished trees (-1) rewrite their root unchanged
        active = current >= 0
        own = _block(stats, row, 1, CODE, 2)[:, 0]  # [B, 2] code, W bits
        up = _block(links, row, 1, PARENT, 2)[:, 0]  # [B, 2] parent, value bits (same start indices)
        code = own[:, 0]
        visits = code + jnp.where(active, count << VISIT_SHIFT, 0)  # flags kept
        w = as_float(own[:, 1]) + jnp.where(active, total, -0.0)  # x + -0.0 == x, bit for bit
        stats = _put(stats, row, CODE, jnp.stack([visits, as_bits(w)], axis=1))
        value = jnp.where(active & (code >> VISIT_SHIFT == 0), first, up[:, 1])
        links = _put(links, row, PARENT, jnp.stack([up[:, 0], value], axis=1))
        return up[:, 0], stats, links, jnp.any(up[:, 0] >= 0)  # a root's parent is -1

    _, stats, links, _ = jax.lax.while_loop(lambda carry: carry[-1], body, (start, stats, links, jnp.any(start >= 0)))
    return tree.replace(stats=stats.reshape(tree.stats.shape), links=links.reshape(tree.links.shape))
