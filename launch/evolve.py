"""python -m launch.evolve --config=configs/tiny.py [--config.<key>=<value> ...]

Runs rstar_jax's self-evolution rounds on the configured problems. A thin absl main: it parses and validates the
config (a misspelt key or an invalid value stops here, before any work), then hands over to
`rstar_jax.pipeline.run`.
"""

from rstar_jax import cli, pipeline

_CONFIG = cli.define_config_flag()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    try:
        pipeline.run(cfg, program="evolve")
    except pipeline.StageRefused as e:
        raise cli.UsageExit(str(e)) from None


if __name__ == "__main__":
    cli.run(main)
