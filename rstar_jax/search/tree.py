"""The batched search tree as arrays (the mctx layout, jax_style_anchors.md §3).

Shape legend:
  B  trees (problems searched in lock-step)
  N  node capacity per tree (static; node 0 is the root, node ids are allocated in creation order)
  K  maximum children per node (= samples per expansion)

`expand` creates all children of a node at once, so they have consecutive ids: `children[s]` is
`children[s, 0], children[s, 0] + 1, ...` (`num_children[s]` of them). Selection relies on this and reads a
node's children as one contiguous window.

Only numbers live here; step texts, executor outputs and answers live host-side, indexed by node id.
Statistics follow the reference's `MCTSNode` (rstar_reference.md Part B §4.1): `visit_count` N, `value_sum` W
(Q = W / N, 0 when N = 0) and `value`, the FIRST value the node ever received.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import jax.numpy as jnp
from flax import struct

__all__ = ["TerminalKind", "Tree", "init_tree"]


class TerminalKind(enum.IntEnum):
    """Why a node is terminal (int8 codes stored in `Tree.terminal_kind`)."""

    NONE = 0
    ANSWER = 1  # an answer step
    CODE_ERRORS = 2  # too many consecutive code errors (reference TOO_MANY_CODE_ERRORS)
    TOO_DEEP = 3  # created deeper than max_depth (reference TOO_MANY_STEPS)
    EXHAUSTED = 4  # every child terminal: pruned by selection


@struct.dataclass
class Tree:
    """B search trees of static capacity N with at most K children per node.

    Attributes:
      parent: `[B, N]` int32 parent id, `NO_PARENT` for the root and unused slots.
      depth: `[B, N]` int32 steps from the root (root 0).
      visit_count: `[B, N]` int32 N(s).
      value_sum: `[B, N]` float32 W(s).
      value: `[B, N]` float32 first value received (0 before any).
      prior: `[B, N]` float32 PPM score given at creation (0 when none was computed).
      terminal: `[B, N]` bool, never selected.
      terminal_kind: `[B, N]` int8 `TerminalKind`.
      children: `[B, N, K]` int32 child ids in creation order, `UNUSED` after the last.
      num_children: `[B, N]` int32.
      next_free: `[B]` int32 first unused node id.
    """

    parent: jnp.ndarray
    depth: jnp.ndarray
    visit_count: jnp.ndarray
    value_sum: jnp.ndarray
    value: jnp.ndarray
    prior: jnp.ndarray
    terminal: jnp.ndarray
    terminal_kind: jnp.ndarray
    children: jnp.ndarray
    num_children: jnp.ndarray
    next_free: jnp.ndarray

    ROOT: ClassVar[int] = 0
    NO_PARENT: ClassVar[int] = -1
    UNUSED: ClassVar[int] = -1

    @property
    def batch_size(self) -> int:
        return self.parent.shape[0]

    @property
    def capacity(self) -> int:
        """N (also inside vmapped per-tree code, where fields are `[N]`)."""
        return self.parent.shape[-1]

    @property
    def max_children(self) -> int:
        return self.children.shape[-1]

    def q_values(self) -> jnp.ndarray:
        """`[B, N]` float32 Q = W / N, 0 where N = 0."""
        n = self.visit_count.astype(jnp.float32)
        return jnp.where(n > 0, self.value_sum / jnp.maximum(n, 1.0), 0.0)


def init_tree(batch_size: int, capacity: int, max_children: int) -> Tree:
    """B empty trees holding only their root (node 0, depth 0, unvisited, not terminal)."""
    if capacity < 1 or max_children < 1 or batch_size < 1:
        raise ValueError(
            f"rstar_jax/search/tree.py: init_tree needs batch_size, capacity, max_children >= 1, "
            f"got {batch_size}, {capacity}, {max_children}"
        )
    shape = (batch_size, capacity)
    return Tree(
        parent=jnp.full(shape, Tree.NO_PARENT, jnp.int32),
        depth=jnp.zeros(shape, jnp.int32),
        visit_count=jnp.zeros(shape, jnp.int32),
        value_sum=jnp.zeros(shape, jnp.float32),
        value=jnp.zeros(shape, jnp.float32),
        prior=jnp.zeros(shape, jnp.float32),
        terminal=jnp.zeros(shape, bool),
        terminal_kind=jnp.zeros(shape, jnp.int8),
        children=jnp.full((*shape, max_children), Tree.UNUSED, jnp.int32),
        num_children=jnp.zeros(shape, jnp.int32),
        next_free=jnp.ones((batch_size,), jnp.int32),
    )
