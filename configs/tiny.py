"""python -m launch.evolve --config=configs/tiny.py

The embedded default: the toy arithmetic domain, small enough for 2 CPU cores. It runs every stage that exists
end to end on a fresh machine (`make demo`). Override any key on the command line, e.g.
`--config.toy.train_per_band=50 --config.workdir=/tmp/tiny`.
"""

from rstar_jax.config import ExecutionConfig, RunConfig, SearchConfig, ToyConfig


def get_config() -> RunConfig:
    return RunConfig(
        seed=0,
        workdir="workdir/tiny",
        first_round=1,
        last_round=4,
        toy=ToyConfig(seed=0, train_per_band=200, test_per_band=50),
        search=SearchConfig(rollouts=8, samples_per_expansion=4, max_depth=10, max_step_tokens=96, batch_problems=64),
        execution=ExecutionConfig(timeout_s=5.0, memory_mb=512, workers=0),
    )
