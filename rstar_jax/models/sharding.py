"""Logical axis names, the one rules table that maps them to the (data, fsdp, tensor) mesh, and helpers.

Every parameter, activation and KV-cache axis of the model family carries a logical name from
`LOGICAL_AXIS_RULES`. Parameters record theirs as the `out_sharding` metadata of their `nnx.Param`;
activations are pinned with `constrain(x, names)`, which is a no-op unless a mesh is set with
`jax.set_mesh(mesh)` around the jitted call.

A mesh axis that does not divide the dimension it would shard is an error naming the array, its shape and
the axis: a mis-sized mesh never quietly replicates the weights. A caller whose dimension legitimately does not
divide (a tiny test model on a wide mesh) passes `rules` that map that logical axis to None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")


class ShardingError(ValueError):
    """An array dimension that the mesh axes it maps to do not divide (a `config.mesh` that does not fit the model
    or the batch); the message names the array, the dimension, the mesh axis and its config key."""


MeshAxes = str | tuple[str, ...] | None

# The one rules table: logical axis name -> mesh axes. Parameters use the plain names, activations the
# `act_*` names, the KV cache the `cache_*` names.
LOGICAL_AXIS_RULES: tuple[tuple[str, MeshAxes], ...] = (
    # parameters
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_head_dim", None),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    # KV cache
    ("cache_layers", None),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("cache_head_dim", None),
)
_RULES: dict[str, MeshAxes] = dict(LOGICAL_AXIS_RULES)


@dataclasses.dataclass(slots=True)
class MeshConfig:
    """Mesh shape; at most one of the three sizes may be -1 (all remaining devices)."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def shape(self, num_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        if sizes.count(-1) > 1:
            raise ValueError(f"MeshConfig{tuple(sizes)}: at most one axis may be -1")
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if num_devices % known:
                raise ValueError(f"MeshConfig{tuple(sizes)}: {num_devices} devices are not divisible by {known}")
            sizes[sizes.index(-1)] = num_devices // known
        if math.prod(sizes) != num_devices:
            raise ValueError(f"MeshConfig{tuple(sizes)}: product {math.prod(sizes)} != {num_devices} devices")
        return sizes[0], sizes[1], sizes[2]


def make_mesh(config: MeshConfig, devices: Sequence[Any] | None = None) -> Mesh:
    """A `Mesh` with axes (data, fsdp, tensor) over `devices` (default: all), in Auto (GSPMD) mode."""
    devices = list(devices if devices is not None else jax.devices())
    shape = config.shape(len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_spec(
    names: Sequence[str | None],
    shape: Sequence[int] | None = None,
    mesh: Any = None,
    what: str = "array",
    rules: Mapping[str, MeshAxes] | None = None,
) -> PartitionSpec:
    """PartitionSpec for logical `names` (`rules` overrides entries of `LOGICAL_AXIS_RULES`).

    With `shape` and `mesh`, every dimension must be divisible by the mesh axes it maps to; otherwise a
    ValueError names `what` (e.g. the parameter's path), the shape and the mesh axis. A caller whose
    dimension legitimately does not divide says so with a rule mapping that logical axis to None.
    """
    if shape is not None and len(shape) != len(names):
        raise ValueError(f"{what}: logical axes {tuple(names)} do not match an array of rank {len(shape)}")
    table = _RULES if rules is None else {**_RULES, **rules}
    spec: list[MeshAxes] = []
    used: set[str] = set()
    for i, name in enumerate(names):
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} is not in sharding.LOGICAL_AXIS_RULES")
        target = table.get(name) if name is not None else None
        axes = tuple(a for a in ((target,) if isinstance(target, str) else target or ()) if a not in used)
        if shape is not None and mesh is not None and axes:
            size = math.prod(mesh.shape[a] for a in axes)
            if shape[i] % size:
                keys = " x ".join(f"config.mesh.{a}" for a in axes)
                raise ShardingError(
                    f"{what} of shape {tuple(shape)}: dimension {i} ({name!r}, {shape[i]}) is not divisible by "
                    f"mesh axis {axes[0] if len(axes) == 1 else axes!r} of size {size} ({keys}); resize the mesh, "
                    f"or map {name!r} to None in the rules"
                )
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names against the mesh set by `jax.set_mesh`; else identity."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh, f"activation {tuple(names)}"))


def named_sharding(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh))


def state_shardings(state: Any, mesh: Mesh, rules: Mapping[str, MeshAxes] | None = None) -> Any:
    """NamedShardings for an `nnx.State` (or any tree of `nnx.Variable`s) from their logical `out_sharding`."""

    def one(path: Any, var: Any) -> Any:
        names = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
        what = f"parameter {jax.tree_util.keystr(path)}"
        return NamedSharding(mesh, logical_to_spec(names, var.shape, mesh, what, rules))

    return jax.tree.map_with_path(one, state, is_leaf=lambda v: isinstance(v, nnx.Variable))
