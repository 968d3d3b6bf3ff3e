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
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from rstar_jax.config import ConfigError, DistributedConfig, MeshSetup
from rstar_jax.models.sharding import LOGICAL_AXIS_RULES, MeshConfig, make_mesh

__all__ = ["cluster_detected", "initialize", "initialize_kwargs", "mesh_shape", "on_mesh", "run_mesh"]

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


@contextlib.contextmanager
def on_mesh(mesh: Mesh) -> Iterator[Mesh]:
    """`jax.set_mesh(mesh)` with the logical-axis rules, so modules built inside (`nnx.eval_shape` of a model whose
    parameters carry logical names) resolve their names to the mesh axes instead of failing on them."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        yield mesh
