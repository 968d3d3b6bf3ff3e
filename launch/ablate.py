"""python -m launch.ablate --config=configs/tiny.py --config.workdir=DIR [--round=R] [--config.<key>=<value> ...]

Paper Table 8 on a finished round of a workdir: trains an ORM and a PQM on the round's `data/orm.json` and
`data/pqm.json` (from the round's policy, with the `ppm` section's settings), then runs the same test-time MCTS of
the round's policy guided by the PPM, the PQM and the ORM on the held-out problems and writes
`round_<R>/ablation/table8.md` (accuracies, paired differences with 95 % bootstrap intervals). A thin absl main
over `rstar_jax.evolve.run.ablate` (`rstar_jax/evolve/ablation.py`); every stage resumes after a kill. Any error a
user can cause ends with one line `error: ...` and exit status 2.
"""

from absl import flags

from rstar_jax import cli
from rstar_jax.evolve.inputs import preflight_ablation

_CONFIG = cli.define_config_flag()
_ROUND = flags.DEFINE_integer("round", None, "the finished round to ablate; default: config.last_round", lower_bound=1)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    r = cfg.last_round if _ROUND.value is None else _ROUND.value
    loaded = preflight_ablation(cfg, r)  # the files, directories and round r checked before jax loads
    # jax and flax load only now (about 3 s): a bad config, file or directory is refused at once
    from rstar_jax import devices
    from rstar_jax.evolve.run import ablate_checked

    devices.initialize(cfg.distributed)  # before any device use; a no-op for one process
    outputs = ablate_checked(cfg, r, loaded)
    print(f"wrote {cfg.workdir}/round_{r}/ablation/table8.md ({outputs['counts']['problems']} problems)")


if __name__ == "__main__":
    cli.run(main)
