"""Checkpoints: the one place in rstar_jax that talks to orbax.

Public surface:
  * `Checkpointer(directory, *, max_to_keep=3, save_every=1, async_save=True, create=True, read_only=False)`:
    `save(step, *, params, opt_state=None, config=None, extra=None, force=False)`, `wait()`, `steps()`,
    `latest_step()`, `restore(step=None, *, params_target=None, opt_state_target=None, config_must_match=None)`,
    `restore_config(step=None)`, `restore_extra(step=None)`, `stored_leaves(step, item)`, `close()`.
  * `Restored(step, params, opt_state, config, extra)`: what `restore` returns.
  * `describe(directory, step=None, *, opt_state=True) -> str`: used by `python -m launch.inspect --ckpt=DIR`.
  * `committed_steps(directory)`: committed steps without creating or cleaning anything.
  * Errors: `CheckpointNotFoundError`, `CheckpointMismatchError`, `CheckpointCorruptError`, `NonFiniteSaveError`.
"""

from rstar_jax.checkpoint._describe import committed_steps, describe
from rstar_jax.checkpoint._manager import Checkpointer
from rstar_jax.checkpoint._trees import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    NonFiniteSaveError,
    Restored,
    StoredLeaf,
)

__all__ = [
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "Checkpointer",
    "NonFiniteSaveError",
    "Restored",
    "StoredLeaf",
    "committed_steps",
    "describe",
]
