"""The batched search tree: one named `[B, N]` array per node field (the mctx layout, jax_style_anchors.md §3).

Shape legend:
  B  trees (problems searched in lock-step)
  N  node capacity per tree (static; node 0 is the root, node ids are allocated in creation order)
  K  maximum children per node (= samples per expansion)

All children of a node are created at once, so they have consecutive ids: the children of s are
`first_child[s], ..., first_child[s] + num_children[s] - 1`, in creation order.

This is the only record of the search's structure. The host keeps what cannot live here (step texts, code,
observations, answers) in lists indexed by node id. Statistics follow the reference's `MCTSNode`
(rstar_reference.md Part B §4.1): `visit_count` N, `value_sum` W (Q = W / N, 0 when N = 0) and `value`, the FIRST
value the node ever received.

The kernels (`kernels.py`) are written for one tree (every field `[N]`) and `jax.vmap`-ed over the B trees;
`set_nodes` is their one way of writing nodes.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["TerminalKind", "Tree", "init_tree", "set_nodes"]


class TerminalKind(enum.IntEnum):
    """Why a node is terminal (`Tree.terminal_kind`); NONE: it is not."""

    NONE = 0
    ANSWER = 1  # an answer step
    CODE_ERRORS = 2  # too many consecutive code errors (reference TOO_MANY_CODE_ERRORS)
    TOO_DEEP = 3  # created deeper than max_depth (reference TOO_MANY_STEPS)
    EXHAUSTED = 4  # every child terminal: pruned by selection


@struct.dataclass(frozen=True)
class Tree:
    """B search trees of static capacity N with at most K children per node (legend in the module docstring).

    Attributes:
      visit_count: `[B, N]` int32 N(s).
      value_sum: `[B, N]` float32 W(s).
      value: `[B, N]` float32 the first value s received (0 before any).
      prior: `[B, N]` float32 PPM score given at creation (0 when none was computed).
      parent: `[B, N]` int32 parent id, `NO_PARENT` for the root and unused slots.
      depth: `[B, N]` int32 steps from the root (root 0).
      first_child: `[B, N]` int32 id of the first child, `UNUSED` without children.
      num_children: `[B, N]` int32.
      terminal_kind: `[B, N]` int8 `TerminalKind`; a node is terminal (never selected) unless NONE.
      next_free: `[B]` int32 first unused node id.
      max_children: K (static).
    """

    visit_count: jnp.ndarray
    value_sum: jnp.ndarray
    value: jnp.ndarray
    prior: jnp.ndarray
    parent: jnp.ndarray
    depth: jnp.ndarray
    first_child: jnp.ndarray
    num_children: jnp.ndarray
    terminal_kind: jnp.ndarray
    next_free: jnp.ndarray
    max_children: int = struct.field(pytree_node=False)

    ROOT: ClassVar[int] = 0
    NO_PARENT: ClassVar[int] = -1
    UNUSED: ClassVar[int] = -1

    @property
    def capacity(self) -> int:
        """N (also inside vmapped per-tree code, where the fields are `[N]`)."""
        return self.visit_count.shape[-1]

    @property
    def terminal(self):
        """`[B, N]` bool: never selected."""
        return self.terminal_kind != TerminalKind.NONE

    def q_values(self):
        """`[B, N]` float32 Q = W / N, 0 where N = 0 (device or host copy)."""
        xp = np if isinstance(self.visit_count, np.ndarray) else jnp
        n = self.visit_count.astype(np.float32)
        return xp.where(n > 0, self.value_sum / xp.maximum(n, 1.0), 0.0)


def set_nodes(tree: Tree, index, **fields) -> Tree:
    """Writes `field[index] = value` for every named field of ONE tree (fields `[N]`).

    `index` is a node id or an array of ids with `value`s of its shape; ids out of range (e.g. N) are dropped.
    Batched code calls it inside `jax.vmap`.
    """
    return tree.replace(**{name: getattr(tree, name).at[index].set(v, mode="drop") for name, v in fields.items()})


def init_tree(batch_size: int, capacity: int, max_children: int) -> Tree:
    """B empty trees holding only their root (node 0, depth 0, unvisited, not terminal)."""
    if capacity < 1 or max_children < 1 or batch_size < 1:
        raise ValueError(
            f"rstar_jax/search/tree.py: init_tree needs batch_size, capacity, max_children >= 1, "
            f"got {batch_size}, {capacity}, {max_children}"
        )
    shape = (batch_size, capacity)  # one buffer per field: a jitted kernel donates them all
    return Tree(
        visit_count=jnp.zeros(shape, jnp.int32),
        value_sum=jnp.zeros(shape, jnp.float32),
        value=jnp.zeros(shape, jnp.float32),
        prior=jnp.zeros(shape, jnp.float32),
        parent=jnp.full(shape, Tree.NO_PARENT, jnp.int32),
        depth=jnp.zeros(shape, jnp.int32),
        first_child=jnp.full(shape, Tree.UNUSED, jnp.int32),
        num_children=jnp.zeros(shape, jnp.int32),
        terminal_kind=jnp.zeros(shape, jnp.int8),
        next_free=jnp.ones((batch_size,), jnp.int32),
        max_children=max_children,
    )
