"""The batched search tree as arrays (the mctx layout, jax_style_anchors.md §3), packed into two node tables.

Shape legend:
  B  trees (problems searched in lock-step)
  N  node capacity per tree (static; node 0 is the root, node ids are allocated in creation order)
  K  maximum children per node (= samples per expansion)

`expand` creates all children of a node at once, so they have consecutive ids: the children of s are
`first_child[s], first_child[s] + 1, ...` (`num_children[s]` of them), K consecutive rows of a table.

Storage (the kernels' cost on XLA:CPU is per gathered element and per op, so what one selection level reads
sits together, measured in benchmarks/bench_search.py):
  stats  `[B, N, 4]` int32, one row per node, all that selection reads of a node: `CODE` = N(s) << 2 |
         expanded << 1 | terminal (N < 2**29 the visit count; expanded: the node has children), `W` the bits of the
         float32 value sum W(s), `FIRST` child id (-1 for none) and `COUNT` of children. The children of a
         node are one `[K, 4]` window of consecutive rows.
  links  `[B, N, 5]` int32, the rest: `PARENT` id, bits of the float32 `VALUE`, `DEPTH`, bits of the float32
         `PRIOR`, `TerminalKind` code `KIND`.
The classic per-field views (`visit_count`, `parent`, `children`, ...) are read-only properties that work on
device arrays and on host copies (`jax.device_get(tree)`) alike.

Only numbers live here; step texts, executor outputs and answers live host-side, indexed by node id.
Statistics follow the reference's `MCTSNode` (rstar_reference.md Part B §4.1): `visit_count` N, `value_sum` W
(Q = W / N, 0 when N = 0) and `value`, the FIRST value the node ever received.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["TerminalKind", "Tree", "init_tree"]

CODE, W, FIRST, COUNT = range(4)  # columns of `Tree.stats`
PARENT, VALUE, DEPTH, PRIOR, KIND = range(5)  # columns of `Tree.links`
TERMINAL_BIT, EXPANDED_BIT, VISIT_SHIFT = 1, 2, 2  # in a `CODE`


class TerminalKind(enum.IntEnum):
    """Why a node is terminal (codes stored in the `KIND` column, read as int8 `Tree.terminal_kind`)."""

    NONE = 0
    ANSWER = 1  # an answer step
    CODE_ERRORS = 2  # too many consecutive code errors (reference TOO_MANY_CODE_ERRORS)
    TOO_DEEP = 3  # created deeper than max_depth (reference TOO_MANY_STEPS)
    EXHAUSTED = 4  # every child terminal: pruned by selection


def as_float(bits):
    """float32 view of int32 bits (numpy or jax array)."""
    if isinstance(bits, np.ndarray):
        return bits.view(np.float32)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def as_bits(values):
    """int32 bits of float32 values (numpy or jax array)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float32).view(np.int32)
    return jax.lax.bitcast_convert_type(jnp.asarray(values, jnp.float32), jnp.int32)


def encode(visits, terminal, expanded):
    """A `CODE` from N and the two flags (numpy or jax arrays)."""
    return (visits << VISIT_SHIFT) | (expanded.astype(np.int32) * EXPANDED_BIT) | terminal.astype(np.int32)


@struct.dataclass
class Tree:
    """B search trees of static capacity N with at most K children per node (layout in the module docstring).

    Attributes:
      stats: `[B, N, 4]` int32 (code: N, expanded and terminal flags; bits of W; first child; number of children).
      links: `[B, N, 5]` int32 (parent, bits of value, depth, bits of prior, kind).
      next_free: `[B]` int32 first unused node id.
      max_children: K (static).
    """

    stats: jnp.ndarray
    links: jnp.ndarray
    next_free: jnp.ndarray
    max_children: int = struct.field(pytree_node=False)

    ROOT: ClassVar[int] = 0
    NO_PARENT: ClassVar[int] = -1
    UNUSED: ClassVar[int] = -1

    @property
    def batch_size(self) -> int:
        return self.stats.shape[0]

    @property
    def capacity(self) -> int:
        """N (also inside vmapped per-tree code, where the tables are `[N, 4]`, `[N, 5]`)."""
        return self.stats.shape[-2]

    @property
    def visit_count(self):
        """`[B, N]` int32 N(s)."""
        return self.stats[..., CODE] >> VISIT_SHIFT

    @property
    def value_sum(self):
        """`[B, N]` float32 W(s)."""
        return as_float(self.stats[..., W])

    @property
    def terminal(self):
        """`[B, N]` bool, never selected."""
        return (self.stats[..., CODE] & TERMINAL_BIT) != 0

    @property
    def value(self):
        """`[B, N]` float32 first value received (0 before any)."""
        return as_float(self.links[..., VALUE])

    @property
    def prior(self):
        """`[B, N]` float32 PPM score given at creation (0 when none was computed)."""
        return as_float(self.links[..., PRIOR])

    @property
    def parent(self):
        """`[B, N]` int32 parent id, `NO_PARENT` for the root and unused slots."""
        return self.links[..., PARENT]

    @property
    def depth(self):
        """`[B, N]` int32 steps from the root (root 0)."""
        return self.links[..., DEPTH]

    @property
    def terminal_kind(self):
        """`[B, N]` int8 `TerminalKind`."""
        return self.links[..., KIND].astype(np.int8)

    @property
    def num_children(self):
        """`[B, N]` int32."""
        return self.stats[..., COUNT]

    @property
    def children(self):
        """`[B, N, K]` int32 child ids in creation order, `UNUSED` after the last."""
        xp = np if isinstance(self.stats, np.ndarray) else jnp
        slots = xp.arange(self.max_children, dtype=np.int32)[(None,) * (self.stats.ndim - 1)]  # [1, 1, K]
        first, count = self.stats[..., FIRST, None], self.stats[..., COUNT, None]
        return xp.where(slots < count, first + slots, Tree.UNUSED).astype(np.int32)

    def q_values(self):
        """`[B, N]` float32 Q = W / N, 0 where N = 0."""
        xp = np if isinstance(self.stats, np.ndarray) else jnp
        n = self.visit_count.astype(np.float32)
        return xp.where(n > 0, self.value_sum / xp.maximum(n, 1.0), 0.0)


def init_tree(batch_size: int, capacity: int, max_children: int) -> Tree:
    """B empty trees holding only their root (node 0, depth 0, unvisited, not terminal)."""
    if capacity < 1 or max_children < 1 or batch_size < 1:
        raise ValueError(
            f"rstar_jax/search/tree.py: init_tree needs batch_size, capacity, max_children >= 1, "
            f"got {batch_size}, {capacity}, {max_children}"
        )
    if batch_size * capacity >= 2**30:
        raise ValueError(
            f"rstar_jax/search/tree.py: B * N = {batch_size} * {capacity} overflows the kernels' int32 row "
            "indices; search fewer problems per batch or with a smaller node capacity"
        )
    stats, links = np.zeros(4, np.int32), np.zeros(5, np.int32)
    stats[FIRST] = links[PARENT] = -1  # no children, no parent
    return Tree(
        stats=jnp.asarray(np.broadcast_to(stats, (batch_size, capacity, 4))),
        links=jnp.asarray(np.broadcast_to(links, (batch_size, capacity, 5))),
        next_free=jnp.ones((batch_size,), jnp.int32),
        max_children=max_children,
    )
