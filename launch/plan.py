"""python -m launch.plan --config=configs/round2.py --config.model.base=qwen2.5-math-7b --config.mesh.fsdp=8

Prints the per-device memory of a run's SFT, PPM training and search (parameters, optimizer state, activations at
the configured batch and length, the KV pool) and each total against `--hbm_gb`, before any money is spent. No
weights are read: `model.base` is an HF directory (only its config.json) or a named published shape
(`rstar_jax.models.shapes.ModelShape`: qwen2.5-math-1.5b, qwen2.5-math-7b), and the mesh is built on fake CPU
devices of the configured count. The training phases are XLA's memory analysis of the compiled train step
(`--xla`, the default; XLA:CPU's compile on the fake devices, so fusion may differ from the GPU / TPU compiler's),
falling back to an exact buffer count plus an activation estimate where that step does not compile (or with
`--noxla`); the table's last column says which figure is which (`rstar_jax.memory_plan`).
"""

from __future__ import annotations

import math
import os

from absl import flags

from rstar_jax import cli

_CONFIG = cli.define_config_flag()
_HBM = flags.DEFINE_float("hbm_gb", 80.0, "memory of one device in GB (80 for H100, 32 for TPU v4, 16 for v5e)")
_XLA = flags.DEFINE_bool("xla", True, "training phases from XLA's memory analysis of the compiled step (else counted)")
_DEVICES = flags.DEFINE_integer("devices", 0, "devices of the planned run; 0 = the product of config.mesh's sizes")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    if _DEVICES.value < 0:
        raise cli.UsageExit(f"--devices={_DEVICES.value}: give the run's device count (>= 1), or 0 for config.mesh's")
    if not (math.isfinite(_HBM.value) and _HBM.value > 0):
        raise cli.UsageExit(f"--hbm_gb={_HBM.value}: the memory of one device in GB must be a positive number")
    sizes = (cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
    n = _DEVICES.value or (math.prod(sizes) if -1 not in sizes else 0)
    if n < 1:
        raise cli.UsageExit(f"config.mesh = {sizes} has a -1: say how many devices the run has with --devices")
    os.environ["JAX_PLATFORMS"] = "cpu"  # fake devices: the plan allocates nothing
    import jax

    jax.config.update("jax_num_cpu_devices", n)
    from flax import nnx

    from rstar_jax import models
    from rstar_jax.devices import run_mesh
    from rstar_jax.memory_plan import format_plan, memory_plan
    from rstar_jax.models.shapes import ModelShape

    base = cfg.model.base
    if base in ModelShape.__members__.values():
        config, what = ModelShape(base).config, f"{base} (published shape)"
    elif base and os.path.isfile(os.path.join(os.path.expanduser(base), "config.json")):
        config, what = models.load_config(os.path.expanduser(base)), base
    else:
        shapes = ", ".join(s.value for s in ModelShape)
        raise cli.UsageExit(f"config.model.base = {base!r}: give an HF directory with a config.json or one of {shapes}")
    mesh = run_mesh(cfg.mesh, jax.devices()[:n])
    # a mesh that does not divide the model's parameters: `ShardingError` names the parameter and config.mesh's key
    models.state_shardings(nnx.state(models.abstract_decoder(config)), mesh)
    title = f"{what} on {n} devices, mesh {dict(mesh.shape)}"
    print(format_plan(memory_plan(cfg, config, mesh, compiled=_XLA.value), _HBM.value, title))


if __name__ == "__main__":
    cli.run(main)
