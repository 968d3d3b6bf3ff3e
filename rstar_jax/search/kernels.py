"""Pure tree kernels with rStar semantics: select (UCT, one level or to a leaf), expand, backup.

`expand` is written for ONE unbatched tree (fields `[N]`, `[N, K]`) and `jax.vmap`-ed over the B trees (legend
in `tree.py`). Selection and backup are written batched on the flattened `[B*N]` fields (node s of tree b is entry
`b * N + s`), all trees advancing together in one `while_loop`: a vmapped loop would select over every `[B, N]`
statistic at each level, and 1-D in-range gathers (no clamping or wrap-around arithmetic) plus contiguous child
windows cut the XLA:CPU ops per level (figures in benchmarks/bench_search.py). Nothing here is jitted: callers
wrap with `jax.jit` (hyper-parameters bound with `functools.partial`, the tree donated), so every shape compiles
once.

Selection (rstar_reference.md Part A and Part B §4.2-4.3), from a node s:
- s has children or is terminal: pick the non-terminal child maximising
  `Q(c) + c_puct * sqrt(ln N(s) / N(c))`, Q = W / N; the exploration term is 0 when N(c) = 0 or N(s) = 0
  (rule `zero`, reference), or +inf for unvisited children (rule `inf`, classic UCT); ties go to the first child
  in creation order. No selectable child: s becomes terminal (`EXHAUSTED` unless it already was), result -1.
- s has no children and is not terminal: the result is s itself (it is to be expanded).
- s = -1 (inactive): -1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rstar_jax.config import UnvisitedRule
from rstar_jax.search.tree import TerminalKind, Tree

__all__ = ["backup", "descend", "expand", "select_level"]


def _take(flat: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """`flat[index]` for in-range `index` (any shape) of a 1-D array: a plain gather, no wrap-around or clamp."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,))
    mode = jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
    return jax.lax.gather(flat, index[..., None], dims, (1,), mode=mode)


def _windows(flat: jnp.ndarray, start: jnp.ndarray, width: int) -> jnp.ndarray:
    """`[B, W]` slices `flat[start[b] : start[b] + W]` of a 1-D array (in range): one contiguous copy per row."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(), start_index_map=(0,))
    mode = jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
    return jax.lax.gather(flat, start[:, None], dims, (width,), mode=mode)


@struct.dataclass
class _Flat:
    """The fields selection reads, flattened to `[B*N]` (`children` to `[B*N*K]`) so gathers are 1-D takes.

    `base[b] = b * N` is the offset of tree b; node s of tree b is entry `base[b] + s`.
    """

    visit_count: jnp.ndarray
    value_sum: jnp.ndarray
    terminal: jnp.ndarray
    children: jnp.ndarray
    num_children: jnp.ndarray
    base: jnp.ndarray

    @classmethod
    def of(cls, tree: Tree) -> _Flat:
        b, n = tree.parent.shape
        if b * n * tree.max_children >= 2**31:
            raise ValueError(
                f"rstar_jax/search/kernels.py: B * N * K = {b} * {n} * {tree.max_children} overflows the int32 "
                "flat indices; search fewer problems per batch or with a smaller node capacity"
            )
        return cls(
            visit_count=jnp.ravel(tree.visit_count),
            value_sum=jnp.ravel(tree.value_sum),
            terminal=jnp.ravel(tree.terminal),
            children=jnp.ravel(tree.children),
            num_children=jnp.ravel(tree.num_children),
            base=jnp.arange(b, dtype=jnp.int32) * n,
        )


def _select_step(
    tree: Tree, flat: _Flat, node: jnp.ndarray, done: jnp.ndarray, c_puct: float, unvisited: UnvisitedRule
):
    """One level of selection in every tree whose `done` is False (a finished tree keeps its node).

    A node's children have consecutive ids (`expand` allocates them together), so the children of s are the
    `num_children[s]` ids from `children[s, 0]`: their statistics are read as one `[B, W]` window per field,
    W = min(K, N), starting at `clip(children[s, 0], 0, N - W)` (slots outside the children are masked).

    Args:
      node: `[B]` int32 current node, -1 for none.
      done: `[B]` bool, trees not to move.

    Returns:
      (`[B]` next node, `[B]` bool the tree moved or stopped at a node to expand this level (not done),
      `[B]` bool the node has no selectable child and is to be pruned).
    """
    capacity, k = tree.capacity, tree.max_children
    width = min(k, capacity)
    at = flat.base + jnp.clip(node, 0, capacity - 1)  # clipped: the gathers below skip bounds checks
    first = _take(flat.children, at * k)  # [B] first child or UNUSED
    count = _take(flat.num_children, at)
    n_parent = _take(flat.visit_count, at).astype(jnp.float32)[:, None]  # [B, 1]
    is_terminal = _take(flat.terminal, at)
    start = jnp.clip(first, 0, capacity - width)
    n_kid = _windows(flat.visit_count, flat.base + start, width).astype(jnp.float32)  # [B, W]
    w_kid = _windows(flat.value_sum, flat.base + start, width)
    kid_terminal = _windows(flat.terminal, flat.base + start, width)
    ids = start[:, None] + jnp.arange(width, dtype=jnp.int32)[None, :]  # [B, W]
    selectable = (ids >= first[:, None]) & (ids < (first + count)[:, None]) & ~kid_terminal
    q = jnp.where(n_kid > 0, w_kid / jnp.maximum(n_kid, 1.0), 0.0)
    explore = c_puct * jnp.sqrt(jnp.log(jnp.maximum(n_parent, 1.0)) / jnp.maximum(n_kid, 1.0))
    unvisited_bonus = jnp.inf if unvisited is UnvisitedRule.INF else 0.0
    u = jnp.where(n_kid > 0, jnp.where(n_parent > 0, explore, 0.0), unvisited_bonus)
    score = jnp.where(selectable, q + u, -jnp.inf)
    best = jnp.argmax(score, axis=1).astype(jnp.int32)  # first maximum: ties go to the first child
    any_selectable = jnp.any(selectable, axis=1)
    go_down = ~done & ((first >= 0) | is_terminal)  # children fill slots from 0: has children
    prune = go_down & ~any_selectable
    nxt = jnp.where(go_down, jnp.where(any_selectable, start + best, -1), node)
    return nxt, go_down, prune


def _apply_prune(tree: Tree, flat: _Flat, pruned: jnp.ndarray) -> Tree:
    """Marks node `pruned[b]` of tree b terminal (kind EXHAUSTED unless it already had a kind); -1 = none."""
    size = tree.batch_size * tree.capacity
    at = flat.base + jnp.clip(pruned, 0, tree.capacity - 1)
    kinds = jnp.ravel(tree.terminal_kind)
    was_terminal = _take(flat.terminal, at)
    kind = jnp.where(was_terminal, _take(kinds, at), jnp.int8(TerminalKind.EXHAUSTED))
    idx = jnp.where(pruned >= 0, at, size)  # out of range -> dropped
    # XLA:CPU copies `terminal` ([B*N] bool) once per `descend` call here, as the loop read it; scattering inside
    # the loop instead removes the copy (~50 us a call) but adds more than that over a ~7-level descent (measured).
    return tree.replace(
        terminal=flat.terminal.at[idx].set(True, mode="drop").reshape(tree.terminal.shape),
        terminal_kind=kinds.at[idx].set(kind, mode="drop").reshape(tree.terminal_kind.shape),
    )


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
    flat = _Flat.of(tree)
    node = jnp.where(node >= 0, node, -1)
    nxt, _, prune = _select_step(tree, flat, node, node < 0, c_puct, unvisited)
    return _apply_prune(tree, flat, jnp.where(prune, node, -1)), nxt


def descend(
    tree: Tree, node: jnp.ndarray, *, c_puct: float, unvisited: UnvisitedRule, max_levels: int
) -> tuple[Tree, jnp.ndarray]:
    """Selection to the leaf: one-level selection repeated (pruning on the way) until every tree reaches a node to
    expand (the result equals its start), -1, or `max_levels` levels. Same arguments and results as
    `select_level`.

    All B trees advance together in one `while_loop` over levels that stops when every tree has finished; the
    loop carries `[B]` node ids and reads the tree only. A descent prunes at most once (where it stops with -1),
    so the pruning scatter runs once after the loop. The loop test reads a flag computed in the body (no
    reduction of its own).
    """
    flat = _Flat.of(tree)

    def cond(state):
        _, _, level, _, running = state
        return running & (level < max_levels)

    def body(state):
        current, done, level, pruned, _ = state
        nxt, moved, prune = _select_step(tree, flat, current, done, c_puct, unvisited)
        done = done | ~moved | prune
        return nxt, done, level + 1, jnp.where(prune, current, pruned), ~jnp.all(done)

    node = jnp.where(node >= 0, node, -1)
    done = node < 0
    start = (node, done, jnp.int32(0), jnp.full_like(node, -1), ~jnp.all(done))
    leaf, _, _, pruned, _ = jax.lax.while_loop(cond, body, start)
    return _apply_prune(tree, flat, pruned), leaf


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

    One `while_loop` for the batch: it carries `[B]` node ids and the three flattened statistics (updated in
    place), scatters B entries per level and runs for the deepest path of the batch.

    Args:
      tree: B trees.
      node: `[B]` int32 first node to update (the parent of the new terminals), -1 for none.
      total: `[B]` float32 sum of the values backed up through `node` (summed by the caller in creation order).
      count: `[B]` int32 number of those values (N grows by it; 0 = nothing to do).
      first: `[B]` float32 the first of those values (becomes `value` of a node never updated before).

    Returns:
      The updated trees.
    """
    b, n = tree.parent.shape
    base = jnp.arange(b, dtype=jnp.int32) * n
    parent = jnp.ravel(tree.parent)
    total, first = total.astype(jnp.float32), first.astype(jnp.float32)
    start = jnp.where(count > 0, node, -1)

    def cond(state):
        return state[-1]

    def body(state):
        current, visits, sums, values, _ = state
        at = base + jnp.clip(current, 0, n - 1)
        idx = jnp.where(current >= 0, at, b * n)  # finished rows scatter out of range: dropped
        old_n, old_w, old_v = _take(visits, at), _take(sums, at), _take(values, at)
        # Writes are `set`s of values computed from the gathers above: the data dependency orders each read
        # before its in-place write, so XLA updates the [B*N] buffers in place instead of copying them.
        visits = visits.at[idx].set(old_n + count, mode="drop")
        sums = sums.at[idx].set(old_w + total, mode="drop")
        values = values.at[idx].set(jnp.where(old_n == 0, first, old_v), mode="drop")
        nxt = jnp.where(current >= 0, _take(parent, at), -1)
        return nxt, visits, sums, values, jnp.any(nxt >= 0)

    flat = (jnp.ravel(tree.visit_count), jnp.ravel(tree.value_sum), jnp.ravel(tree.value))
    _, visits, sums, values, _ = jax.lax.while_loop(cond, body, (start, *flat, jnp.any(start >= 0)))
    shape = tree.visit_count.shape
    return tree.replace(visit_count=visits.reshape(shape), value_sum=sums.reshape(shape), value=values.reshape(shape))
