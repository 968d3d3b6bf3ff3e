"""Checkpoint records (`StoredLeaf`, `Restored`, errors) and pure-JAX checks on the trees a checkpoint stores:
paths, shapes, dtypes, finiteness, JSON-ness.

Nothing here imports orbax. The manager turns orbax's stored metadata into `StoredLeaf` records and this module
compares them with restore targets, so that every mismatch is reported by key path before orbax reads a byte.

Key paths are normalised to tuples of strings the way orbax serialises a pytree: dict keys and attribute names
as-is, sequence indices as decimal strings (an optax `ScaleByAdamState` namedtuple is stored as a dict of its
fields, a tuple as a list). A path is shown to users as `item/a/b/0`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "NonFiniteSaveError",
    "Restored",
    "StoredLeaf",
]

Path = tuple[str, ...]


class CheckpointNotFoundError(FileNotFoundError):
    """The checkpoint directory, or a committed step in it, does not exist."""


class CheckpointMismatchError(ValueError):
    """A restore target or an expected config disagrees with what the checkpoint stores."""


class CheckpointCorruptError(RuntimeError):
    """A committed step exists but could not be read back."""


class NonFiniteSaveError(ValueError, FloatingPointError):
    """`save` was given NaN or infinite values (a diverged training run); nothing was written."""


@dataclasses.dataclass(frozen=True)
class StoredLeaf:
    """One array as the checkpoint's metadata describes it.

    Attributes:
      path: normalised key path inside its item, e.g. `("0", "mu", "embed")`.
      shape: the global shape.
      dtype: numpy dtype as stored.
      sharding: human-readable sharding at save time (mesh axes and partition spec, or the device).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    sharding: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Restored:
    """What `Checkpointer.restore` returns.

    Attributes:
      step: the step that was restored (older than the latest if the latest was unreadable).
      params: pytree shaped and sharded like `params_target` (or nested dicts on one device without a target).
      opt_state: pytree like `opt_state_target`, or None when no target was given.
      config: the stored config (JSON data: tuples come back as lists), or None if none was saved.
      extra: the stored extra JSON (data cursor, round, RNG seed...), or None.
    """

    step: int
    params: Any
    opt_state: Any | None
    config: dict[str, Any] | None
    extra: dict[str, Any] | None


def key_to_str(key: Any) -> str:
    """One `jax.tree_util` key entry as orbax names it in a stored tree."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def show(item: str, path: Path) -> str:
    """User-facing name of a leaf: `item/a/b/0`."""
    return "/".join((item, *path))


def flatten(tree: Any, is_leaf: Any = None) -> list[tuple[Path, Any]]:
    """Leaves of `tree` with normalised key paths, in `jax.tree_util` order (`None` subtrees have no leaves)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [(tuple(key_to_str(k) for k in path), leaf) for path, leaf in flat]


def abstract_target(item: str, target: Any) -> Any:
    """Turns a restore target into a tree of `jax.ShapeDtypeStruct` with shardings.

    Args:
      item: item name for error messages (`params`, `opt_state`).
      target: pytree whose leaves are `jax.Array` or `jax.ShapeDtypeStruct` (with `.sharding` set).

    Raises:
      CheckpointMismatchError: a leaf has no shape/dtype or no sharding; the message names the leaf.
    """

    def one(path: tuple[Any, ...], leaf: Any) -> jax.ShapeDtypeStruct:
        name = show(item, tuple(key_to_str(k) for k in path))
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise CheckpointMismatchError(
                f"restore target leaf {name} is {type(leaf).__name__}; expected jax.Array or jax.ShapeDtypeStruct"
            )
        sharding = getattr(leaf, "sharding", None)
        if sharding is None:
            raise CheckpointMismatchError(
                f"restore target leaf {name} has no sharding; build it as "
                "jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))"
            )
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree_util.tree_map_with_path(one, target)


def check_target(item: str, stored: Sequence[StoredLeaf], target: Any) -> None:
    """Raises if `target` does not have exactly the stored paths, shapes and dtypes.

    Args:
      item: item name used in messages.
      stored: the stored leaves of that item.
      target: pytree of `jax.ShapeDtypeStruct` (see `abstract_target`).

    Raises:
      CheckpointMismatchError: listing every missing, unexpected, reshaped or retyped leaf by key path.
    """
    by_path = {leaf.path: leaf for leaf in stored}
    wanted = dict(flatten(target))
    problems = [f"{show(item, p)}: in the checkpoint, not in the target" for p in by_path if p not in wanted]
    problems += [f"{show(item, p)}: in the target, not in the checkpoint" for p in wanted if p not in by_path]
    for path, leaf in wanted.items():
        have = by_path.get(path)
        if have is None:
            continue
        if tuple(leaf.shape) != have.shape:
            problems.append(f"{show(item, path)}: shape {have.shape} stored, {tuple(leaf.shape)} in the target")
        if np.dtype(leaf.dtype) != have.dtype:
            problems.append(f"{show(item, path)}: dtype {have.dtype} stored, {np.dtype(leaf.dtype)} in the target")
    if problems:
        listing = "\n  ".join(sorted(problems))
        raise CheckpointMismatchError(f"restore target for '{item}' does not match the checkpoint:\n  {listing}")


@jax.jit
def _leaf_is_finite(leaves: tuple[jax.Array, ...]) -> jax.Array:
    """`[L]` bool: whether every element of each leaf is finite (all leaves on one mesh or device set)."""
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def _placement(x: Any) -> Any:
    """Group key: leaves with the same key can go through one jitted call together."""
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        return "host"
    mesh = getattr(sharding, "mesh", None)
    return ("mesh", mesh) if mesh is not None else ("devices", frozenset(d.id for d in sharding.device_set))


def nonfinite_paths(item: str, tree: Any) -> list[str]:
    """Names of the floating-point leaves of `tree` holding a NaN or an infinity.

    One jitted reduction per placement (mesh or device set); numpy leaves are checked on the host.
    """
    groups: dict[Any, list[tuple[Path, Any]]] = {}
    for path, x in flatten(tree):
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            groups.setdefault(_placement(x), []).append((path, x))
    bad = []
    for placement, members in groups.items():
        if placement == "host":
            flags = [bool(np.isfinite(np.asarray(x)).all()) for _, x in members]
        else:
            flags = list(np.asarray(jax.device_get(_leaf_is_finite(tuple(x for _, x in members)))))
        bad += [show(item, p) for (p, _), ok in zip(members, flags, strict=True) if not ok]
    return sorted(bad)


def check_json(what: str, value: Any, path: str = "") -> Any:
    """Returns `value` as plain JSON data (tuples become lists), or raises naming the offending key.

    Args:
      what: name of the argument for messages (`config`, `extra`).
      value: nested mappings with string keys, sequences, str, int, float (finite), bool, None.

    Raises:
      TypeError: a key is not a string or a value is not JSON data.
      ValueError: a float is NaN or infinite.
    """
    here = f"{what}{path}" if path else what
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{here}: key {key!r} is {type(key).__name__}; JSON keys must be str")
            out[key] = check_json(what, sub, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [check_json(what, sub, f"{path}[{i}]") for i, sub in enumerate(value)]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{here} is {value}; JSON cannot store non-finite floats")
        return value
    raise TypeError(f"{here} is {type(value).__name__}; only JSON data (dict, list, str, int, float, bool, None)")


def _flat_json(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON mappings as `{"a.b.c": leaf}`; lists are compared whole."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat_json(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def check_config(stored: Mapping[str, Any] | None, expected: Mapping[str, Any], where: str) -> None:
    """Raises unless every key of `expected` (dotted, nested) is stored with an equal value.

    Only the keys given in `expected` are compared, so callers pass the part of the config that must not change
    across a resume (model shape, tokenizer), not the whole run config.

    Raises:
      CheckpointMismatchError: naming each differing or missing key with both values.
    """
    if not expected:
        return
    want = _flat_json(check_json("config_must_match", expected))
    have = _flat_json(stored or {})
    missing = object()
    problems = []
    for key, value in want.items():
        got = have.get(key, missing)
        if got is missing:
            problems.append(f"{key}: not in the stored config, expected {json.dumps(value)}")
        elif got != value:
            problems.append(f"{key}: stored {json.dumps(got)}, expected {json.dumps(value)}")
    if problems:
        listing = "\n  ".join(problems)
        raise CheckpointMismatchError(f"config of {where} does not match:\n  {listing}")


def corrupt_metadata(directory: Any, step: int, err: BaseException) -> CheckpointCorruptError:
    """The error for unreadable metadata of `step` under `directory` (an `epath.Path`), naming the first metadata
    file that is not valid JSON (orbax's own error rarely names it): `_CHECKPOINT_METADATA`, an item's `_METADATA`,
    or the `metadata` file of a JSON item (`config`, `extra`)."""
    step_dir = directory / str(step)
    found = [*step_dir.glob("*METADATA"), *step_dir.glob("*/*METADATA"), *step_dir.glob("*/metadata")]
    for path in sorted(found):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as bad:
            return CheckpointCorruptError(f"step {step}: metadata file {path} is truncated or corrupt ({bad})")
    return CheckpointCorruptError(f"step {step} in {directory}: unreadable metadata ({type(err).__name__}: {err})")
