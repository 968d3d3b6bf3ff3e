"""python -m launch.evaluate --config=configs/eval.py --config.eval.policy=DIR --config.eval.reward_model=DIR

Test-time evaluation of a policy (and a reward model) on named benchmarks, the toy's test split or a problem file
of your own, with every method of `rstar_jax.search.baselines` (section `eval`), for example

    python -m launch.evaluate --config=configs/eval.py --config.eval.benchmarks=math500,aime2024 \\
        --config.eval.policy=workdir/tiny/round_4/sft/policy \\
        --config.eval.reward_model=workdir/tiny/round_4/ppm/model --config.eval.budgets=1,2,4,8

The search, execution, grading and model settings are `configs/tiny.py`'s; outputs go to `<workdir>/eval`.
"""

from configs import tiny
from rstar_jax.config import RunConfig


def get_config() -> RunConfig:
    cfg = tiny.get_config()
    cfg.workdir = "workdir/eval"
    return cfg
