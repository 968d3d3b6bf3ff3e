"""python -m launch.evolve --config=configs/tiny.py [--config.<key>=<value> ...] [--dry_run]

Runs rstar_jax's self-evolution rounds on the configured problems. A thin absl main: it parses and validates the
config (a misspelt key or an invalid value stops here, before any work), checks the files and directories it names
(`rstar_jax.evolve.inputs.preflight`, before jax loads), starts `jax.distributed` when the config or the environment
(SLURM, TPU VMs) says there are several processes, then hands over to `rstar_jax.evolve.run.evolve_checked`, which
takes the workdir's lock, then runs the stages.
`--dry_run` stops after resolving the config and the distributed settings and prints them as JSON (the cluster
scripts' check: `launch/cluster/`). Any error a user can cause ends with one line `error: ...` and exit status 2
(`rstar_jax.cli`).
"""

import json

from absl import flags

from rstar_jax import cli
from rstar_jax.config import to_dict
from rstar_jax.evolve.inputs import preflight

_CONFIG = cli.define_config_flag()
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the resolved distributed settings and mesh request; run nothing")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    if _DRY_RUN.value:
        from rstar_jax import devices

        dist = devices.initialize_kwargs(cfg.distributed)
        print(json.dumps({"distributed": dist, "mesh": to_dict(cfg.mesh), "workdir": cfg.workdir}))
        return
    loaded = preflight(cfg)  # the files and directories the config names, checked before jax loads
    # jax and flax load only now (about 3 s): a bad config, file or directory is refused at once
    from rstar_jax import devices
    from rstar_jax.evolve.run import evolve_checked

    devices.initialize(cfg.distributed)  # before any device use; a no-op for one process
    evolve_checked(cfg, loaded)


if __name__ == "__main__":
    cli.run(main)
