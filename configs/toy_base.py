"""python -m launch.pretrain --config=configs/toy_base.py

The committed toy base (`rstar_jax/toy/base`): the tiny decoder that `configs/tiny.py` starts from, as the paper
starts from Qwen2.5-Math. It is pretrained as a language model on 60,000 code-format solutions of toy problems of
its own split (the toy generator's "base" split, 20,000 per band), which every toy train and test split excludes.
Held out: 40 more problems per band, for the loss and greedy pass@1 in the manifest.

A base, not a solver: 1,400 steps (22,400 documents, a third of the corpus) on a cosine schedule. A first build
planned 7,000 steps and was stopped: its held-out greedy pass@1 was 17.5% at step 1,399 and 65% at step 2,841
(gsm 92%, math 78%, olympiad 25%), above the 63% of training problems the round-1 teacher's search solves, which
would leave the self-evolution rounds nothing to show. The build resumes from `workdir/toy_base/train/checkpoints`,
so it can run in pieces (`--config.toy_base.minutes=10` trains ten minutes, then checkpoints and exports the step
reached). On 2 idle CPU cores a step takes about 0.6 s: the build takes about 15 minutes.
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
        model=dataclasses.replace(tiny.get_config().model, base=""),  # the shape tiny.py fine-tunes
        toy_base=ToyBaseConfig(corpus_seed=0, corpus_per_band=20000, held_out_per_band=40, tokenizer_per_band=2000),
        pretrain=TrainConfig(
            steps=1400,
            batch_size=16,
            max_length=448,
            length_window=8,
            learning_rate=2e-3,
            warmup_steps=100,
            decay=Decay.COSINE,
            weight_decay=0.01,
            compute_dtype=DType.FLOAT32,
            eval_every=700,
            eval_fraction=0.0,
            save_every=250,
            log_every=100,
            seed=1,
        ),
        search=SearchConfig(max_depth=10, max_step_tokens=64, batch_problems=120),
        execution=ExecutionConfig(timeout_s=5.0, memory_mb=512, workers=0),
    )
