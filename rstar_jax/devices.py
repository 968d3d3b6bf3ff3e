"""Where a run executes: `jax.distributed` across hosts, then the (data, fsdp, tensor) mesh every stage uses.

    initialize(cfg.distributed)      # once, before any device use; a no-op for one process
    mesh = run_mesh(cfg.mesh)        # config section `mesh`; 1 x 1 x 1 = the first device
    with on_mesh(mesh): ...          # every jitted call, model build and KV pool of the stages on that mesh

`initialize` takes the coordinator, process count and process id from the config, else lets JAX detect them where
it can (SLURM, TPU VMs, Kubernetes, `JAX_COORDINATOR_ADDRESS`); without either it does nothing, so one process
needs no setup. `run_mesh` turns the config section into a `Mesh`: the default 1 x 1 x 1 is the first device, any
other shape must use every device of the run (all processes), with one size -1 taking what is left. Every mistake
is a `ConfigError` naming the key and the device count.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from rstar_jax.config import SCRATCH_BASE, ConfigError, DistributedConfig, MeshSetup, RunConfig
from rstar_jax.models.sharding import LOGICAL_AXIS_RULES, MeshConfig, make_mesh

__all__ = [
    "check_fits",
    "cluster_detected",
    "initialize",
    "initialize_kwargs",
    "mesh_shape",
    "on_mesh",
    "process_mesh",
    "run_mesh",
]

_KEYS = ("data", "fsdp", "tensor")


def cluster_detected(env: dict[str, str] | None = None) -> bool:
    """Whether the environment describes a multi-process job JAX can configure itself from."""
    env = dict(os.environ if env is None else env)
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        return True
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):  # a multi-host TPU slice
        return True
    return bool(env.get("JOB_COMPLETION_INDEX")) and int(env.get("JOBSET_REPLICAS", env.get("REPLICAS", "1")) or 1) > 1


def initialize_kwargs(dist: DistributedConfig, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The `jax.distributed.initialize` arguments for `dist` (None: one process, nothing to do).

    Raises ConfigError for settings that contradict each other."""
    n, pid, coord = dist.num_processes, dist.process_id, dist.coordinator
    if pid >= 0 and n and pid >= n:
        raise ConfigError(f"config.distributed.process_id = {pid}: must be < config.distributed.num_processes = {n}")
    if coord and not (n and pid >= 0) and not cluster_detected(env):
        raise ConfigError(
            f"config.distributed.coordinator = {coord!r} needs config.distributed.num_processes and process_id "
            "(no SLURM / TPU / Kubernetes environment to detect them from)"
        )
    if n == 1 or (not coord and not n and pid < 0 and not cluster_detected(env)):
        return None
    if n > 1 and not coord and not cluster_detected(env):
        raise ConfigError(
            f"config.distributed.num_processes = {n} needs config.distributed.coordinator (host:port of process 0)"
        )
    return {
        "coordinator_address": coord or None,
        "num_processes": n or None,
        "process_id": pid if pid >= 0 else None,
    }


def initialize(dist: DistributedConfig) -> None:
    """`jax.distributed.initialize` once per process (module docstring); later calls do nothing."""
    if jax.distributed.is_initialized():
        return
    kwargs = initialize_kwargs(dist)
    if kwargs is None:
        return
    jax.distributed.initialize(**kwargs)
    if dist.num_processes and jax.process_count() != dist.num_processes:
        raise ConfigError(
            f"config.distributed.num_processes = {dist.num_processes}, but the coordinator "
            f"{dist.coordinator or '(detected)'} reports {jax.process_count()} processes"
        )
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def mesh_shape(setup: MeshSetup, num_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) for `num_devices` devices; 1 x 1 x 1 stays one device. ConfigError names the key."""
    sizes = [setup.data, setup.fsdp, setup.tensor]
    given = f"config.mesh = (data={sizes[0]}, fsdp={sizes[1]}, tensor={sizes[2]})"
    for k, v in zip(_KEYS, sizes, strict=True):
        if v == 0 or v < -1:
            raise ConfigError(f"config.mesh.{k} = {v}: a mesh axis has size >= 1, or -1 for the devices left over")
    if sizes.count(-1) > 1:
        raise ConfigError(f"{given}: at most one of config.mesh.data / fsdp / tensor may be -1")
    if sizes == [1, 1, 1]:
        return 1, 1, 1
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        k = _KEYS[sizes.index(-1)]
        if num_devices % known:
            raise ConfigError(f"{given}: config.mesh.{k} = -1 but {num_devices} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ConfigError(
            f"{given}: {math.prod(sizes)} devices, but the run has {num_devices}; make the product "
            "config.mesh.data x fsdp x tensor equal the device count, or set one of them to -1"
        )
    return sizes[0], sizes[1], sizes[2]


def run_mesh(setup: MeshSetup, devices: Sequence[Any] | None = None) -> Mesh:
    """The run's mesh (module docstring); `devices` default: every device of every process."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(setup, len(devices))
    if shape == (1, 1, 1):
        if jax.process_count() > 1:
            raise ConfigError(
                f"config.mesh = 1 x 1 x 1 is one device, but the run has {jax.process_count()} processes and "
                f"{len(devices)} devices; set e.g. config.mesh.fsdp=-1"
            )
        devices = devices[:1]
    return make_mesh(MeshConfig(*shape), devices)


def process_mesh(mesh: Mesh) -> Mesh:
    """This process's part of `mesh` (its own devices, the same axes; `mesh` itself for one process): where its
    searches run. ConfigError when the process's devices do not form a block of the mesh."""
    try:
        return mesh.local_mesh
    except (ValueError, AssertionError) as err:
        raise ConfigError(
            f"config.mesh = {dict(mesh.shape)}: process {jax.process_index()}'s devices are not one block of the mesh "
            f"({err}); make config.mesh.data (the outer axis) a multiple of the {jax.process_count()} processes"
        ) from err


# (what the model config calls it, its name in an HF config.json, the mesh axes the sharding rules shard it over)
_MODEL_DIMS = (
    ("heads", "num_attention_heads", ("tensor",)),
    ("kv_heads", "num_key_value_heads", ("tensor",)),
    ("hidden", "hidden_size", ("fsdp",)),
    ("intermediate", "intermediate_size", ("tensor",)),
    ("vocab", "vocab_size", ("tensor",)),
)


def _model_dims(cfg: RunConfig) -> tuple[str, dict[str, int]]:
    """(where the run's model shape comes from, {dimension: size}) for the base the rounds train from."""
    if cfg.model.base == SCRATCH_BASE:
        return "config.toy_model", {k: getattr(cfg.toy_model, k) for k, _, _ in _MODEL_DIMS}
    from rstar_jax.toy.base_corpus import BASE_DIR

    path = Path(cfg.model.base or BASE_DIR) / "config.json"
    if not path.is_file():  # preflight names a missing base; nothing to check here
        return str(path), {}
    hf = json.loads(path.read_text(encoding="utf-8"))
    dims = {k: int(hf[key]) for k, key, _ in _MODEL_DIMS if isinstance(hf.get(key), int)}
    return f"{path} (config.model.base)", dims


def check_fits(cfg: RunConfig, shape: tuple[int, int, int]) -> None:
    """ConfigError, naming both keys, when a mesh axis of `shape` (data, fsdp, tensor) does not divide a dimension
    it shards: the base model's heads, kv_heads, hidden, intermediate and vocab sizes, or the `batch_size` (split
    over data x fsdp) of `sft`, `ppm` and, when the scratch base is pretrained, `pretrain`."""
    sizes = dict(zip(_KEYS, shape, strict=True))
    where, dims = _model_dims(cfg)
    for name, key, axes in _MODEL_DIMS:
        size = math.prod(sizes[a] for a in axes)
        if name in dims and dims[name] % size:
            axis = " x ".join(f"config.mesh.{a}={sizes[a]}" for a in axes)
            shown = f"{where}.{name}" if where.startswith("config.") else f"{key} in {where}"
            raise ConfigError(f"{axis} does not divide model {name}: {shown} = {dims[name]}")
    rows = sizes["data"] * sizes["fsdp"]
    pretrains = cfg.model.base == SCRATCH_BASE and cfg.toy_model.read_per_band > 0  # the scratch base's reading
    for section in ("pretrain", "sft", "ppm") if pretrains else ("sft", "ppm"):
        batch = getattr(cfg, section).batch_size
        if batch % rows:
            raise ConfigError(
                f"config.mesh.data={sizes['data']} x config.mesh.fsdp={sizes['fsdp']} = {rows} devices do not divide "
                f"config.{section}.batch_size = {batch}: each device takes an equal share of a batch's rows"
            )


@contextlib.contextmanager
def on_mesh(mesh: Mesh) -> Iterator[Mesh]:
    """`jax.set_mesh(mesh)` with the logical-axis rules, so modules built inside (`nnx.eval_shape` of a model whose
    parameters carry logical names) resolve their names to the mesh axes instead of failing on them."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        yield mesh
