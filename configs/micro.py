"""python -m launch.evolve --config=configs/micro.py

A micro run of the whole self-evolution loop (four rounds in well under a minute on 2 CPU cores): a few toy
problems, a one-layer decoder (with three steps of reading pretraining), two rollouts, a handful of training
steps. It checks the plumbing (stages, manifests, resume, reports) in CI; its accuracies mean nothing.
`configs/tiny.py` is the real embedded default.
"""

from rstar_jax.config import (
    SCRATCH_BASE,
    EvolveConfig,
    ExecutionConfig,
    ModelSetup,
    RunConfig,
    SearchConfig,
    TeacherConfig,
    ToyConfig,
    ToyModelConfig,
    TrainConfig,
)


def _train(steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=4,
        max_length=384,
        learning_rate=3e-3,
        warmup_steps=1,
        compute_dtype="float32",
        eval_fraction=0.2,
        save_every=1,
        log_every=1,
    )


def get_config() -> RunConfig:
    return RunConfig(
        seed=0,
        workdir="workdir/micro",
        first_round=1,
        last_round=4,
        progress_bars=False,
        toy=ToyConfig(seed=0, train_per_band=4, test_per_band=2),
        model=ModelSetup(
            base=SCRATCH_BASE,  # the micro decoder and three reading steps, made in the run
            pool_slots=8192,
            max_rows=64,
            length_buckets=1,  # fewest programs to compile (configs/tiny.py)
        ),
        toy_model=ToyModelConfig(
            vocab=384, hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, max_positions=512, read_per_band=8
        ),
        teacher=TeacherConfig(wrong_operand=0.1, wrong_operation=0.05, code_error=0.05, answer_error=0.0),
        search=SearchConfig(rollouts=2, samples_per_expansion=3, max_depth=6, max_step_tokens=32, batch_problems=16),
        evolve=EvolveConfig(
            bootstrap_rollouts=4,
            unsolved_rollouts=2,
            unsolved_more_rollouts=(2,),
            eval_samples=2,
            eval_temperature=1.0,
            sft_replay=True,
        ),
        execution=ExecutionConfig(timeout_s=5.0, memory_mb=512, workers=1),
        pretrain=_train(3),
        sft=_train(4),
        ppm=_train(3),
    )
