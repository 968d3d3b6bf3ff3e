"""python -m launch.pretrain --config=configs/toy_base.py

The committed toy base (`rstar_jax/toy/base`): the tiny decoder that `configs/tiny.py` starts from, as the paper
starts from Qwen2.5-Math. It is pretrained as a language model on 60,000 code-format solutions of toy problems of
its own split (the toy generator's "base" split, 20,000 per band), which every toy train and test split excludes.
Held out: 40 more problems per band, for the loss and greedy pass@1 in the manifest.

A base, not a solver: 1,000 steps (16,000 documents, about a quarter of the corpus) on a cosine schedule leave
held-out greedy pass@1 at 34% (gsm 60%, math 38%, olympiad 5%), well below the 63% of training problems the
round-1 teacher's search solves. Shorter and longer builds miss that window: 600 steps left it at 2%; 1,400 steps
made a solver (59%: gsm 82%, math 72%, olympiad 22%), and a 7,000-step schedule reached 65% by step 2,841. The
build resumes from `workdir/toy_base/train/checkpoints`, so it can run in pieces (`--config.toy_base.minutes=10`
trains ten minutes, then checkpoints and exports the step reached). On 2 CPU cores the committed build took
870 s (about 0.55 s a step when the cores are idle, plus two held-out evaluations).
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
