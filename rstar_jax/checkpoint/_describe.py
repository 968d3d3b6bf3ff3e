"""`describe`: a checkpoint as text (tree, shapes, dtypes, save-time shardings, counts, config), no model code.

Only orbax metadata and the JSON items are read; no array data is loaded, so describing a 7B checkpoint is instant
and works on a machine with a different device count than the one that saved it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from etils import epath

from rstar_jax.checkpoint._manager import Checkpointer
from rstar_jax.checkpoint._trees import CheckpointNotFoundError, StoredLeaf

__all__ = ["committed_steps", "describe"]


def _human_bytes(n: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    size, i = float(n), 0
    while size >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    return f"{n} B" if i == 0 else f"{size:.2f} {units[i]}"


def _table(item: str, leaves: Sequence[StoredLeaf]) -> list[str]:
    """`item: N arrays, M values (bytes)` then one aligned row per array: path, shape, dtype, sharding."""
    count = sum(leaf.size for leaf in leaves)
    nbytes = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    rows = [("/".join(leaf.path) or "<root>", str(leaf.shape), str(leaf.dtype), leaf.sharding) for leaf in leaves]
    header = ("path", "shape", "dtype", "sharding")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"{item}: {len(leaves)} arrays, {count:,} values ({_human_bytes(nbytes)})"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return lines


def describe(directory: str | epath.PathLike, step: int | None = None, *, opt_state: bool = True) -> str:
    """Text report of one committed step (default: latest) of the checkpoint at `directory`.

    Lists the committed steps, every `params` array (path, shape, dtype, sharding as saved), the total parameter
    count, the `opt_state` arrays when stored and `opt_state` is True, then the stored config and extra JSON.

    Raises:
      CheckpointNotFoundError: the directory is missing, holds no committed step, or lacks `step`.
    """
    with Checkpointer(directory, read_only=True) as ckpt:
        steps = ckpt.steps()
        if not steps:
            raise CheckpointNotFoundError(f"no committed checkpoint in {ckpt.directory}{_hint(ckpt.directory)}")
        chosen = steps[-1] if step is None else step
        if chosen not in steps:
            raise CheckpointNotFoundError(f"step {chosen} is not committed in {ckpt.directory}; committed: {steps}")
        info = ckpt.step_info(chosen)
        params = ckpt.stored_leaves(chosen, "params")
        lines = [
            f"checkpoint: {ckpt.directory}",
            f"step: {chosen}    committed steps: {', '.join(map(str, steps))}",
            f"items: {', '.join(info['items'])}",
            f"parameters: {sum(leaf.size for leaf in params):,}",
            "",
            *_table("params", params),
        ]
        if opt_state and "opt_state" in info["items"]:
            lines += ["", *_table("opt_state", ckpt.stored_leaves(chosen, "opt_state"))]
        for name, value in (("config", ckpt.restore_config(chosen)), ("extra", ckpt.restore_extra(chosen))):
            lines += ["", f"{name}:", json.dumps(value, indent=2, sort_keys=True) if value is not None else "  (none)"]
    return "\n".join(lines) + "\n"


def _hint(directory: epath.Path) -> str:
    """Where the steps are when `directory` is a training run's directory (`<stage>/run`) rather than its
    `checkpoints/` subdirectory."""
    inner = directory / "checkpoints"
    if inner.is_dir() and committed_steps(inner):
        return f"; its steps are in {inner} (--ckpt={inner})"
    return ""


def committed_steps(directory: str | epath.PathLike) -> list[int]:
    """Committed steps under `directory`, ascending, without creating, cleaning or moving anything.

    Empty when the directory does not exist: launchers use it to decide between resuming and a fresh start.
    """
    if not epath.Path(directory).exists():
        return []
    with Checkpointer(directory, read_only=True) as ckpt:
        return ckpt.steps()
