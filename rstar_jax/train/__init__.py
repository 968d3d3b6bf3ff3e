"""Training: the shared optax loop and the SFT / PPM / ORM / PQM losses and data views.

from rstar_jax import train
examples = train.sft_examples(records, encode, eos_id, cfg.train.max_length)
fit, held_out = examples.split(cfg.train.eval_fraction, cfg.train.seed)
policy, summary = train.train(policy, train.sft_loss, fit, cfg=cfg.train, workdir=..., eval_examples=held_out)
"""

from rstar_jax.train.batches import (
    RECORD_FIELDS,
    Encoder,
    Examples,
    RecordError,
    check_records,
    pair_examples,
    sft_examples,
    value_examples,
)
from rstar_jax.train.fit import Kind, fit, load_policy, split_by_problem
from rstar_jax.train.loop import LossFn, NonFiniteError, Preempted, TrainState, make_optimizer, train
from rstar_jax.train.losses import bradley_terry_loss, pqm_loss, sft_loss

__all__ = [
    "RECORD_FIELDS",
    "Encoder",
    "Examples",
    "Kind",
    "LossFn",
    "NonFiniteError",
    "Preempted",
    "RecordError",
    "TrainState",
    "bradley_terry_loss",
    "check_records",
    "fit",
    "load_policy",
    "make_optimizer",
    "pair_examples",
    "pqm_loss",
    "sft_examples",
    "sft_loss",
    "split_by_problem",
    "train",
    "value_examples",
]
