"""Who does what when a run spans several processes (`jax.distributed`): one writer, barriers, shares of a list.

    if is_leader(): write_json(path, summary)   # process 0 writes manifests, merged files and reports
    barrier("round_1/extract:done")            # every process waits here; then the others read what it wrote
    mine = share(problems)                     # this process's problems: positions p, p + n, p + 2n, ...
    host = gathered(state)                     # a sharded pytree as whole numpy arrays on every process

With one process (the default) `is_leader()` is true, `share` returns the whole list and `barrier` returns at
once: a one-process run is the one-share case of the same code. The barrier is the coordination service's
(`jax.distributed`'s own key-value store and barriers, as orbax's multi-host checkpointing uses), not a device
collective, so a process may wait at it for as long as process 0 spends on a stage it alone runs (evaluation,
reports): `BARRIER_TIMEOUT_S`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["BARRIER_TIMEOUT_S", "barrier", "gathered", "is_leader", "shard_path", "shard_paths", "share"]

T = TypeVar("T")
BARRIER_TIMEOUT_S = 7 * 24 * 3600  # a week: the longest stage one process runs alone while the others wait
_COUNTER = itertools.count()


def is_leader() -> bool:
    """Whether this process writes the run's shared files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Waits until every process of the run reaches the barrier `name` (no-op for one process).

    Every process must pass the same barriers in the same order; the name (made unique per call by a counter every
    process advances alike) tells which one a stuck run waits at."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the coordination service client of `jax.distributed.initialize`

    client = distributed.global_state.client
    if client is None:
        raise RuntimeError(f"barrier {name!r}: {jax.process_count()} processes but jax.distributed has no client")
    client.wait_at_barrier(f"rstar_jax:{next(_COUNTER)}:{name}", int(timeout_s * 1000))


def share(items: Sequence[T]) -> list[T]:
    """This process's share of `items`: the positions congruent to its index modulo the process count."""
    return list(items[jax.process_index() :: jax.process_count()])


def shard_path(path: Path) -> Path:
    """This process's shard of the output file `path`: `trees.jsonl` -> `trees.shard-00001-of-00002.jsonl`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{jax.process_index():05d}-of-{jax.process_count():05d}{path.suffix}")


def shard_paths(path: Path) -> list[Path]:
    """Every process's shard of `path`, in process order."""
    path, n = Path(path), jax.process_count()
    return [path.with_name(f"{path.stem}.shard-{i:05d}-of-{n:05d}{path.suffix}") for i in range(n)]


def gathered(tree: Any) -> Any:
    """Every array of `tree` whole, as numpy, on every process (a collective for arrays spanning processes: every
    process must call it). An array on this process's devices alone is already whole: it is copied as it is."""

    def whole(a: Any) -> np.ndarray:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(jax.device_get(a))

    return jax.tree.map(whole, tree)
