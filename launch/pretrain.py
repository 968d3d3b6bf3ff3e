"""python -m launch.pretrain --config=configs/toy_base.py [--config.<key>=<value> ...]

Builds (or continues building) the committed toy base: a tiny decoder pretrained on code-format solutions of
problems disjoint from every toy split, exported as an HF directory with its manifest
(`rstar_jax/toy/base_build.py`). Rerunning resumes from the orbax checkpoints in `<workdir>/train`;
`--config.toy_base.minutes=N` trains for N minutes, then checkpoints and exports the step reached.
"""

from rstar_jax import cli
from rstar_jax.workdir import WorkdirLock, setup_logging

_CONFIG = cli.define_config_flag()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    from pathlib import Path

    from rstar_jax.toy.base_build import build_base, export_dir

    export_dir(cfg)  # config.toy_base.out: a file there, or an unwritable place, is refused before any work
    with WorkdirLock(cfg.workdir):
        setup_logging(Path(cfg.workdir).expanduser() / "logs", "pretrain")
        manifest = build_base(cfg)
    steps, metrics = manifest["steps"], manifest["metrics"]
    print(f"toy base: step {steps['done']} of {steps['planned']}, {manifest['wall_seconds']:.0f} s in all; {metrics}")


if __name__ == "__main__":
    cli.run(main)
