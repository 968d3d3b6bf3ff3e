"""One training job end to end: load the initial HF model, build the examples, train, export an HF directory.

    summary = fit(Kind.SFT, records, init_dir="round_1/sft/init", out_dir="round_1/sft/policy",
                  cfg=cfg.sft, workdir="round_1/sft/run")

Used by `launch.train` and by the self-evolution rounds. The held-out split is by problem id (`split_by_problem`),
so no held-out example shares a problem with a training example: for the PPM, `eval_accuracy` is the share of
held-out preference pairs ordered correctly. The trained model is written to `out_dir` through a temporary
sibling and a rename, so `out_dir` is either absent or complete. `workdir` keeps checkpoints and
`metrics.jsonl` and the tokenizer (`tokenizer/`); a rerun after a kill resumes there, and `train.export` turns any of
its checkpoints into an HF directory.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging
from flax import nnx

from rstar_jax import models, processes
from rstar_jax.config import TrainConfig
from rstar_jax.train.batches import Examples, pair_examples, sft_examples, value_examples
from rstar_jax.train.export import TOKENIZER_DIR
from rstar_jax.train.loop import train
from rstar_jax.train.losses import bradley_terry_loss, pqm_loss, sft_loss

__all__ = ["Kind", "fit", "load_policy", "split_by_problem"]


class Kind(enum.StrEnum):
    """What a job trains: the policy (SFT) or a value model on preference pairs / trajectory pairs / Q values."""

    SFT = "sft"
    PPM = "ppm"
    ORM = "orm"
    PQM = "pqm"


def load_policy(model_dir: str | os.PathLike, mesh: Any = None) -> tuple[models.Decoder, Any]:
    """The policy of an HF directory and its tokenizer, with the rStar special tokens and room for them; `mesh`:
    parameters load sharded by their logical axes (default: one device)."""
    policy = models.load_decoder(model_dir, dtype="float32", mesh=mesh)
    tokenizer = models.load_tokenizer(model_dir, policy.config)
    models.add_rstar_tokens(tokenizer)
    return models.fit_embeddings(policy, len(tokenizer)), tokenizer


def split_by_problem(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """(train, held-out): about `fraction` of the problem ids (at least one when fraction > 0) are held out."""
    ids = sorted(set(examples.ids))
    n_held = 0 if fraction <= 0 or len(ids) < 2 else max(1, round(len(ids) * fraction))
    held = set(np.random.default_rng([seed, 11]).permutation(ids)[:n_held].tolist())
    mask = np.array([i in held for i in examples.ids], bool)
    return examples.take(np.flatnonzero(~mask)), examples.take(np.flatnonzero(mask))


def _eos_id(config: models.ModelConfig, model_dir: Any) -> int:
    eos = config.eos_token_id
    eos_id = eos[0] if isinstance(eos, tuple) else eos
    if eos_id is None:
        raise ValueError(f"{Path(model_dir) / 'config.json'}: no eos_token_id; SFT targets end with EOS")
    return int(eos_id)


def _export(kind: Kind, model: Any, tokenizer: Any, out: Path) -> None:
    """Writes the HF directory through a temporary sibling and a rename (never a half-written `out`); with several
    processes every one gathers the parameters, process 0 writes, the others wait until it has."""
    nnx.update(model, processes.gathered(nnx.state(model)))  # whole arrays on every process (the mesh may span many)
    if processes.is_leader():
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if kind is Kind.SFT:
            models.save_decoder(model, tmp, tokenizer=tokenizer)
        else:
            models.save_ppm(model, tmp, tokenizer=tokenizer)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    processes.barrier(f"{out}:exported")


def fit(
    kind: Kind,
    records: Sequence[dict[str, Any]],
    *,
    init_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: TrainConfig,
    workdir: str | os.PathLike,
    mesh: Any = None,
    allow_empty: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """Trains from the HF policy in `init_dir` on `records` and exports the result to `out_dir`.

    Args:
      kind: SFT records `{query, response, id}`; PPM / ORM pairs `{prompt, pos, neg, pos_count, neg_count, id}`;
        PQM values `{text, q, id}`. PPM / ORM / PQM start from the policy plus a fresh value head (seed `cfg.seed`).
      records: the training records (a JSON list as `rstar_jax.extract` writes it).
      cfg: the loop settings; `cfg.eval_fraction` of the problems is held out.
      mesh: the (data, fsdp, tensor) mesh the model loads and trains on (`rstar_jax.devices.run_mesh`); default
        one device.
      workdir: checkpoints and metrics (resumable).
      allow_empty: with no records, export the initial model untrained (a PPM: the policy and a fresh head)
        instead of raising; a round whose trees hold no preference pair still hands a PPM to the next one.
      progress: show the training progress bar (the run's `progress_bars`).

    Returns:
      The final metrics (`loss`, `eval_loss`, and for pairs `eval_accuracy`), plus `examples` and `held_out`.
    """
    if not records and not allow_empty:
        raise ValueError(f"rstar_jax/train/fit.py: no {kind.value} records to train on (workdir {workdir})")
    policy, tokenizer = load_policy(init_dir, mesh)
    if processes.is_leader():
        tokenizer.save_pretrained(str(Path(workdir) / TOKENIZER_DIR))  # the run's own: `train.export` reads it
    if not records:
        logging.warning("rstar_jax/train: no %s records; exporting the initial model untrained to %s", kind, out_dir)
        model = policy if kind is Kind.SFT else models.PPM.from_policy(policy, nnx.Rngs(cfg.seed))
        _export(kind, model, tokenizer, Path(out_dir))
        return {"examples": 0.0, "held_out": 0.0}

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    if kind is Kind.SFT:
        model: Any = policy
        loss, examples = sft_loss, sft_examples(records, encode, _eos_id(policy.config, init_dir), cfg.max_length)
    elif kind in (Kind.PPM, Kind.ORM):
        model = models.PPM.from_policy(policy, nnx.Rngs(cfg.seed))
        loss, examples = bradley_terry_loss, pair_examples(records, encode, cfg.max_length)
    else:
        model = models.PPM.from_policy(policy, nnx.Rngs(cfg.seed))
        loss, examples = pqm_loss, value_examples(records, encode, cfg.max_length)
    fit_examples, held = split_by_problem(examples, cfg.eval_fraction, cfg.seed)
    if cfg.epochs > 0:
        steps = max(1, math.ceil(cfg.epochs * len(fit_examples) / (cfg.batch_size * cfg.accum_steps)))
        cfg = dataclasses.replace(cfg, steps=steps)
        logging.info("rstar_jax/train: %s epochs of %d examples = %d steps", cfg.epochs, len(fit_examples), steps)
    trained, summary = train(
        model,
        loss,
        fit_examples,
        cfg=cfg,
        workdir=workdir,
        eval_examples=held if len(held) else None,
        mesh=mesh,
        progress=progress,
    )
    _export(kind, trained, tokenizer, Path(out_dir))
    return {**summary, "examples": float(len(fit_examples)), "held_out": float(len(held))}
