"""python -m launch.pretrain --config=configs/toy_base.py

The committed toy base (`rstar_jax/toy/base`): the tiny decoder that `configs/tiny.py` starts from, as the paper
starts from Qwen2.5-Math. It is pretrained as a language model on 60,000 code-format solutions of toy problems of
its own split (the toy generator's "base" split, 20,000 per band), which every toy train and test split excludes.
Held out: 40 more problems per band, for the loss and greedy pass@1 in the manifest.

A base, not a solver: 600 steps (9,600 documents, a sixth of the corpus) on a cosine schedule. Longer builds
make a solver that leaves the self-evolution rounds nothing to show: held-out greedy pass@1 reached 59% after
1,400 steps (gsm 82%, math 72%, olympiad 22%) and 65% at step 2,841 of a 7,000-step schedule, about the 63% of
training problems the round-1 teacher's search solves. The build resumes from `workdir/toy_base/train/checkpoints`,
so it can run in pieces (`--config.toy_base.minutes=10` trains ten minutes, then checkpoints and exports the step
reached). On 2 idle CPU cores a step takes about 0.55 s: the build takes about 7 minutes.
"""

import dataclasses

from configs import tiny
from rstar_jax.config import (
    Decay,
    DType,
    ExecutionConfig,
    RunConfig,
    SearchConfig,
    ToyBaseConfig,
    TrainConfig,
)


def get_config() -> RunConfig:
    return RunConfig(
        seed=0,
        workdir="workdir/toy_base",
        run_rounds=False,
        model=dataclasses.replace(tiny.get_config().model, base=""),
        toy_model=tiny.get_config().toy_model,  # the shape tiny.py fine-tunes
        toy_base=ToyBaseConfig(corpus_seed=0, corpus_per_band=20000, held_out_per_band=40, tokenizer_per_band=2000),
        pretrain=TrainConfig(
            steps=1000,
            batch_size=16,
            max_length=448,
            length_window=8,
            learning_rate=2e-3,
            warmup_steps=50,
            decay=Decay.COSINE,
            weight_decay=0.01,
            compute_dtype=DType.FLOAT32,
            eval_every=500,
            eval_fraction=0.0,
            save_every=250,
            log_every=100,
            seed=1,
        ),
        search=SearchConfig(max_depth=10, max_step_tokens=64, batch_problems=120),
        execution=ExecutionConfig(timeout_s=5.0, memory_mb=512, workers=0),
    )
