"""`Checkpointer`: save and restore params, optimizer state, step, config and extra JSON with orbax.

One step directory holds up to four orbax items: `params` and `opt_state` (pytrees of arrays, orbax
`StandardSave`), `config` and `extra` (JSON, orbax `JsonSave`). The step number is the directory name; our own
facts (format tag, which items exist, parameter count) go in orbax's per-step `custom_metadata`.

Built on the orbax v0 `ocp.CheckpointManager`, the API orbax 0.12 documents as stable; the v1 API still lives
under `orbax.checkpoint.experimental.v1` in 0.12.8. Everything orbax-specific stays in this package.

Guarantees (see tests/test_checkpoint*.py):
  * atomic: orbax writes `<step>.orbax-checkpoint-tmp*` and renames it to `<step>` when finalized, and lists only
    finalized steps, so a killed save is never a step. A writable `Checkpointer` has orbax delete leftover tmp
    directories (in the background, finished before its first save).
  * async: `save` returns once arrays are copied to host; the write runs in a background thread. `wait()`,
    the next `save` and `close()` (also on leaving the `with` block) block until it is done and re-raise its error.
  * any mesh: a restore target is a pytree of `jax.ShapeDtypeStruct(shape, dtype, sharding=...)`; the arrays come
    back with those shardings whatever mesh they were saved from.
  * corrupt latest: `restore()` falls back to the previous committed step with a loud warning, and renames the
    unreadable step to `<step>.corrupt-<ns>` (kept for inspection) so later saves are not blocked by it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from rstar_jax.checkpoint._trees import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    NonFiniteSaveError,
    Restored,
    StoredLeaf,
    abstract_target,
    check_config,
    check_json,
    check_target,
    corrupt_metadata,
    flatten,
    nonfinite_paths,
)

__all__ = ["Checkpointer"]

log = logging.getLogger("rstar_jax.checkpoint")

FORMAT = "rstar_jax.checkpoint/1"
_ARRAY_ITEMS = ("params", "opt_state")
_JSON_ITEMS = ("config", "extra")


def _registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    """Handlers for our four items, so a fresh (or read-only) manager can read metadata and restore."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for name in _ARRAY_ITEMS:
        registry.add(name, ocp.args.StandardSave, ocp.StandardCheckpointHandler)
        registry.add(name, ocp.args.StandardRestore, ocp.StandardCheckpointHandler)
    for name in _JSON_ITEMS:
        registry.add(name, ocp.args.JsonSave, ocp.JsonCheckpointHandler)
        registry.add(name, ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
    return registry


def _spec_entry(entry: Any) -> str:
    if entry is None:
        return "None"
    if isinstance(entry, tuple | list):
        return "(" + ", ".join(str(e) for e in entry) + ")"
    return str(entry)


def sharding_text(meta: Any) -> str:
    """Readable form of orbax sharding metadata: `mesh(data=2, fsdp=2, tensor=2) P(fsdp, tensor)`."""
    if isinstance(meta, ocp.metadata.NamedShardingMetadata):
        axes = ", ".join(f"{n}={int(s)}" for n, s in zip(meta.axis_names, np.asarray(meta.shape), strict=True))
        spec = ", ".join(_spec_entry(e) for e in meta.partition_spec)
        return f"mesh({axes}) P({spec})"
    if isinstance(meta, ocp.metadata.SingleDeviceShardingMetadata):
        return f"device {meta.device_str}"
    return "unknown" if meta is None else type(meta).__name__


def _is_array_meta(x: Any) -> bool:
    return isinstance(x, ocp.metadata.ArrayMetadata)


class Checkpointer:
    """Saves and restores training state under one directory, one subdirectory per step.

    Use as a context manager (or call `close()`), so that pending async saves finish and their errors surface.
    An unclosed Checkpointer loses its last async save at interpreter exit (orbax's executors are already shut
    down by then; earlier committed steps are untouched):

        with Checkpointer(workdir / "ckpt", max_to_keep=3) as ckpt:
            if ckpt.latest_step() is not None:
                state = ckpt.restore(params_target=abstract_params, opt_state_target=abstract_opt)
            ...
            ckpt.save(step, params=params, opt_state=opt_state, config=config.to_dict())

    Args:
      directory: root directory (local path or any `etils.epath` URL such as `gs://...`).
      max_to_keep: newest committed steps to keep (at least 2, so a corrupt latest has a fallback); None keeps all.
      save_every: `save(step)` writes only when `step % save_every == 0`, unless `force=True`.
      async_save: write in a background thread after the device-to-host copy.
      create: create `directory` if missing; with False a missing directory raises `CheckpointNotFoundError`
        (use it when resuming, so a typo'd path is not silently a fresh start).
      read_only: never write, delete or clean up (used by `describe`).
    """

    def __init__(
        self,
        directory: str | epath.PathLike,
        *,
        max_to_keep: int | None = 3,
        save_every: int = 1,
        async_save: bool = True,
        create: bool = True,
        read_only: bool = False,
    ):
        if max_to_keep is not None and max_to_keep < 2:
            raise ValueError(f"max_to_keep={max_to_keep}: keep at least 2 steps so a corrupt latest can fall back")
        if save_every < 1:
            raise ValueError(f"save_every={save_every}: must be >= 1")
        self._directory = epath.Path(directory)
        self._read_only = read_only
        if not self._directory.exists() and (read_only or not create):
            raise CheckpointNotFoundError(f"checkpoint directory {self._directory} does not exist")
        policy = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=0 if read_only else 1,
            save_decision_policy=policy.FixedIntervalPolicy(save_every),
            preservation_policy=policy.LatestN(max_to_keep),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,
            create=create and not read_only,
            read_only=read_only,
        )
        self._manager = ocp.CheckpointManager(self._directory, options=options, handler_registry=_registry())
        self._barriers = 0
        self._closed = False

    @property
    def directory(self) -> epath.Path:
        return self._directory

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for pending saves (re-raising their errors) and releases orbax resources. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._manager.close()

    def wait(self) -> None:
        """Blocks until a pending async save is committed; re-raises an error from the background write."""
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        """Committed (orbax: finalized) steps, ascending; waits for a pending save first (and re-raises its error)."""
        if not self._read_only:
            self.wait()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """Newest committed step, or None when there is none."""
        steps = self.steps()
        return steps[-1] if steps else None

    def reached_preemption(self, step: int) -> bool:
        """Whether the job is being preempted (JAX's preemption sync point, agreed by every process at `step`);
        always False without a preemption service (one process without `jax.distributed`)."""
        return bool(self._manager.reached_preemption(step))

    def save(
        self,
        step: int,
        *,
        params: Any,
        opt_state: Any = None,
        config: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Starts saving one step; returns False (writing nothing) when the step is not due.

        Args:
          step: training step; must be newer than every saved step. Does not block on a pending save unless
            this one is due (orbax then waits for the previous write before starting the next).
          params: pytree of arrays (`[...]` any shapes, any shardings).
          opt_state: optax state or any pytree of arrays, or None.
          config: JSON-able mapping (e.g. `ConfigDict.to_dict()`), compared on restore via `config_must_match`.
          extra: JSON-able mapping for small host state (data cursor, round index, RNG seed).
          force: save even if `step` is not a multiple of `save_every` (e.g. on SIGTERM or at the end).

        Raises:
          NonFiniteSaveError: a non-finite parameter (named; a `ValueError` and a `FloatingPointError`).
          ValueError: read-only, or `step` not newer than the latest step.
          Exception: the error of the previous async save, if it failed.
          TypeError: `config`/`extra` is not JSON data (the key is named).
        """
        if self._read_only or self._closed:
            state = "read-only" if self._read_only else "closed"
            raise ValueError(f"Checkpointer({self._directory}) is {state}; cannot save step {step}")
        latest = self._manager.latest_step()  # includes a save still in flight; does not block
        if latest is not None and step <= latest:
            raise ValueError(
                f"cannot save step {step} to {self._directory}: step {latest} already exists "
                "(was the step counter restored?)"
            )
        if not force and not self._manager.should_save(step):
            return False
        items = {
            name: check_json(name, value) for name, value in (("config", config), ("extra", extra)) if value is not None
        }
        bad = nonfinite_paths("params", params)
        if opt_state is not None:
            bad += nonfinite_paths("opt_state", opt_state)
        if bad:
            raise NonFiniteSaveError(f"refusing to save step {step} to {self._directory}: non-finite values in {bad}")
        args = {"params": ocp.args.StandardSave(params)}
        if opt_state is not None:
            args["opt_state"] = ocp.args.StandardSave(opt_state)
        args.update({name: ocp.args.JsonSave(value) for name, value in items.items()})
        leaves = [x for _, x in flatten(params)]
        info = {
            "format": FORMAT,
            "items": sorted(args),
            "param_count": int(sum(np.size(x) for x in leaves)),
            "param_bytes": int(sum(np.size(x) * np.dtype(x.dtype).itemsize for x in leaves)),
        }
        return self._manager.save(step, args=ocp.args.Composite(**args), force=True, custom_metadata=info)

    def step_info(self, step: int) -> dict[str, Any]:
        """Our per-step facts: `format`, `items`, `param_count`, `param_bytes`."""
        info = dict(self._metadata(step, lambda: self._manager.metadata(step)).custom_metadata or {})
        if info.get("format") != FORMAT:
            raise CheckpointCorruptError(
                f"step {step} in {self._directory} has no '{FORMAT}' metadata; not written by rstar_jax.checkpoint"
            )
        return info

    def _metadata(self, step: int, read: Any) -> Any:
        """`read()`; unreadable metadata (orbax only logs a bad step file) -> `CheckpointCorruptError` naming it."""
        try:
            json.loads((self._directory / str(step) / "_CHECKPOINT_METADATA").read_text())
            return read()
        except Exception as err:
            raise corrupt_metadata(self._directory, step, err) from err

    def stored_leaves(self, step: int, item: str = "params") -> list[StoredLeaf]:
        """Path, shape, dtype and save-time sharding of every array of `item` (`params` or `opt_state`)."""
        if item not in self.step_info(step)["items"]:
            raise CheckpointMismatchError(f"step {step} in {self._directory} has no '{item}' item")
        tree = self._metadata(step, lambda: self._manager.item_metadata(step)[item].tree)
        return [
            StoredLeaf(path, tuple(m.shape), np.dtype(m.dtype), sharding_text(m.sharding))
            for path, m in flatten(tree, is_leaf=_is_array_meta)
        ]

    def _read_json(self, step: int, item: str) -> dict[str, Any] | None:
        if item not in self.step_info(step)["items"]:
            return None
        # an empty or corrupt `<step>/<item>/metadata` file -> `CheckpointCorruptError` naming it
        return self._metadata(
            step, lambda: self._manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
        )

    def _resolve(self, step: int | None) -> int:
        steps = self.steps()
        if not steps:
            raise CheckpointNotFoundError(f"no committed checkpoint in {self._directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise CheckpointNotFoundError(f"step {step} is not committed in {self._directory}; committed: {steps}")
        return step

    def restore_config(self, step: int | None = None) -> dict[str, Any] | None:
        """The config saved with `step` (default: latest committed), or None if none was saved."""
        return self._read_json(self._resolve(step), "config")

    def restore_extra(self, step: int | None = None) -> dict[str, Any] | None:
        """The extra JSON saved with `step` (default: latest committed), or None."""
        return self._read_json(self._resolve(step), "extra")

    def _target(self, step: int, item: str, target: Any) -> Any:
        stored = self.stored_leaves(step, item)
        if target is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            tree = self._manager.item_metadata(step)[item].tree  # readable: stored_leaves above read it
            return jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), tree, is_leaf=_is_array_meta
            )
        target = abstract_target(item, target)
        check_target(item, stored, target)
        return target

    def _restore_step(
        self, step: int, params_target: Any, opt_state_target: Any, config_must_match: Mapping[str, Any] | None
    ) -> Restored:
        config = self._read_json(step, "config")
        if config_must_match is not None:
            check_config(config, config_must_match, f"step {step} in {self._directory}")
        args = {"params": ocp.args.StandardRestore(self._target(step, "params", params_target))}
        if opt_state_target is not None:
            args["opt_state"] = ocp.args.StandardRestore(self._target(step, "opt_state", opt_state_target))
        out = self._manager.restore(step, args=ocp.args.Composite(**args))
        opt_state = out["opt_state"] if opt_state_target is not None else None
        return Restored(step, out["params"], opt_state, config, self._read_json(step, "extra"))

    def restore(
        self,
        step: int | None = None,
        *,
        params_target: Any = None,
        opt_state_target: Any = None,
        config_must_match: Mapping[str, Any] | None = None,
    ) -> Restored:
        """Restores one committed step onto the shardings of the targets.

        Args:
          step: a committed step; None means the latest, falling back to older steps if it is unreadable.
          params_target: pytree of `jax.ShapeDtypeStruct` with `.sharding` (or arrays) giving shapes, dtypes and
            placement, e.g. `jax.eval_shape(init)` with shardings for the current mesh. None: nested dicts as
            stored, on the first local device.
          opt_state_target: the same for the optimizer state; None skips it.
          config_must_match: config keys (nested) that must equal the stored config, e.g. the model section.

        Raises:
          CheckpointNotFoundError: no committed step, or `step` is not committed.
          CheckpointMismatchError: a target's paths/shapes/dtypes or `config_must_match` disagree (never falls
            back: a mismatch is the caller's error, not corruption).
          CheckpointCorruptError: the step (or, with step=None, every committed step) could not be read.
        """
        chosen = self._resolve(step)
        candidates = [chosen] if step is not None else sorted(self.steps(), reverse=True)
        failures: list[tuple[int, Exception]] = []
        for candidate in candidates:
            try:
                restored = self._restore_step(candidate, params_target, opt_state_target, config_must_match)
            except CheckpointMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - any read failure of one step is treated as corruption
                failures.append((candidate, err))
                what = f"{type(err).__name__}: {str(err)[:500]}"
                log.warning("!!! CHECKPOINT STEP %d IN %s IS UNREADABLE (%s)", candidate, self._directory, what)
                continue
            for bad_step, _ in failures:
                log.warning(
                    "!!! FELL BACK FROM UNREADABLE STEP %d TO STEP %d IN %s", bad_step, restored.step, self._directory
                )
                self._set_aside(bad_step)
            return restored
        listing = "; ".join(f"step {s}: {type(e).__name__}: {str(e)[:300]}" for s, e in failures)
        raise CheckpointCorruptError(f"could not restore from {self._directory}: {listing}") from failures[-1][1]

    def _set_aside(self, step: int) -> None:
        """Renames corrupt step directory `step` to `<step>.corrupt-<ns>`: kept for inspection, invisible to orbax,
        so it neither shadows older steps nor blocks later saves. Read-only checkpointers leave it in place."""
        if self._read_only:
            return
        if jax.process_index() == 0:
            target = self._directory / f"{step}.corrupt-{time.time_ns()}"
            (self._directory / str(step)).rename(target)
            log.warning("moved corrupt step directory %s to %s", self._directory / str(step), target.name)
        self._barriers += 1
        ocp.multihost.sync_global_processes(f"rstar_jax_ckpt_set_aside_{step}_{self._barriers}")
        self._manager.reload()
