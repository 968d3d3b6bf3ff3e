"""The losses plugged into the shared loop: SFT causal LM, PPM / ORM Bradley–Terry, PQM value regression.

Each loss takes the (compute-dtype) module and one micro-batch of `Examples` arrays and returns
`(loss [] fp32, metrics {name: [] fp32})`. Positions are `cumsum(mask) - 1` (right padding).

Einsum / shape legend: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rstar_jax.models import PPM, Decoder

__all__ = ["bradley_terry_loss", "pqm_loss", "sft_loss"]

Batch = dict[str, jax.Array]


def _positions(mask: jax.Array) -> jax.Array:
    """mask [B, T] bool -> positions [B, T] int32."""
    return jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)


def sft_loss(model: Decoder, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Next-token cross-entropy averaged over response tokens (`loss_mask` of the predicted token).

    batch: tokens [B, T] int32, mask [B, T] bool, loss_mask [B, T] bool.
    """
    tokens, mask = batch["tokens"], batch["mask"]
    logits, _ = model(tokens, _positions(mask), mask)  # [B, T, V] fp32
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:])  # [B, T-1]
    weight = batch["loss_mask"][:, 1:].astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    loss = (ce * weight).sum() / count
    return loss, {"tokens": weight.sum()}


def bradley_terry_loss(model: PPM, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted −log σ(r⁺ − r⁻) on the PPM's tanh scores; the weights are 1/(n⁺·n⁻) (Part A: averaged with them).

    batch: pos_tokens, pos_mask, neg_tokens, neg_mask [B, T]; weight [B]. Positives and negatives run as one
    [2B, T] forward pass. Used for the PPM (step pairs) and the ORM (whole-trajectory pairs).
    """
    tokens = jnp.concatenate([batch["pos_tokens"], batch["neg_tokens"]], axis=0)  # [2B, T]
    mask = jnp.concatenate([batch["pos_mask"], batch["neg_mask"]], axis=0)
    scores = model(tokens, _positions(mask), mask)  # [2B]
    pos, neg = jnp.split(scores, 2)
    w = batch["weight"].astype(jnp.float32)
    loss = (w * -jax.nn.log_sigmoid(pos - neg)).sum() / jnp.maximum(w.sum(), 1e-12)
    return loss, {"accuracy": jnp.mean((pos > neg).astype(jnp.float32))}


def pqm_loss(model: PPM, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PQM ablation (paper Table 8): the value head regressed on the step's Q value with MSE.

    batch: tokens, mask [B, T]; target [B] fp32 in [-1, 1].
    """
    tokens, mask = batch["tokens"], batch["mask"]
    values = model(tokens, _positions(mask), mask)  # [B]
    err = values - batch["target"]
    return jnp.mean(err * err), {"sign_accuracy": jnp.mean((jnp.sign(values) == jnp.sign(batch["target"])) * 1.0)}
