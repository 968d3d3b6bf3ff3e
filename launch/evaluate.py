"""python -m launch.evaluate --config=configs/eval.py --config.eval.policy=DIR [--config.eval.<key>=<value> ...]

Evaluates a policy (and a reward model: PPM, ORM or PQM) on named benchmarks, the toy's test split or a problem
file, with the test-time methods of section `eval`, e.g. `--config.eval.benchmarks=math500,aime2024
--config.eval.budgets=1,2,4,8`. A thin absl main over `rstar_jax.evaluation.evaluate`: predictions go to
`<out>/<set>/<method>@<budget>.jsonl` problem by problem (a rerun after a kill resumes), then
`<out>/results.md`, `results.json` and, with several budgets, `curves_<set>.png`. The run holds the workdir's lock
(`config.eval.out`'s when that is set): a second evaluation there at the same time is refused. Any error a user can
cause ends with one line `error: ...` and exit status 2.
"""

import contextlib

from rstar_jax import cli
from rstar_jax.workdir import WorkdirLock

_CONFIG = cli.define_config_flag()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = cli.parsed_config(_CONFIG)
    # jax, flax and transformers load only now (about 3 s): a bad config is refused at once
    from rstar_jax import devices, processes
    from rstar_jax.evaluation import evaluate

    devices.initialize(cfg.distributed)  # before any device use; a no-op for one process
    # One evaluation per output directory: the workdir's lock (or config.eval.out's, when set), held by process 0;
    # a second run is refused (`WorkdirBusy`) instead of appending the same predictions twice.
    root, key = (cfg.eval.out, "config.eval.out") if cfg.eval.out else (cfg.workdir, "config.workdir")
    with WorkdirLock(root, key) if processes.is_leader() else contextlib.nullcontext():
        result = evaluate(cfg)
    for path in (*result["tables"], *result["curves"]):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
