"""The process preference model: the decoder trunk plus a value head, `tanh(w · h_last)`.

rstar_reference.md Part A: one linear layer on the final hidden state of the last *real* token, then tanh,
identically in training and inference (no hidden `tanh(r / 5)`). The head has no bias: under the
Bradley-Terry loss `-log σ(r⁺ - r⁻)` a bias cancels and never trains, and a bias-free head exports as the
`score` layer of HF `*ForSequenceClassification`, which vLLM and transformers serve directly.

Shapes: B batch, T tokens, D hidden size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rstar_jax.models.config import ModelConfig
from rstar_jax.models.decoder import Decoder, Trunk

HEAD_INIT_STD = 1e-3


def last_real_index(mask: jax.Array) -> jax.Array:
    """mask: [B, T] bool -> [B] int32, index of the last real token (left or right padding; 0 if none)."""
    T = mask.shape[1]
    return jnp.argmax(jnp.where(mask, jnp.arange(T, dtype=jnp.int32), -1), axis=1).astype(jnp.int32)


class PPM(nnx.Module):
    """Decoder trunk + value head. `__call__` returns values in (-1, 1), one per sequence."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.trunk = Trunk(config, rngs=rngs)
        head = HEAD_INIT_STD * jax.random.normal(rngs.params(), (config.hidden_size,), jnp.float32)
        self.value_head = nnx.Param(head.astype(config.dtype), out_sharding=("embed",), eager_sharding=False)  # [D]

    @classmethod
    def from_policy(cls, policy: Decoder, rngs: nnx.Rngs) -> PPM:
        """A PPM sharing nothing with `policy`: a copy of its trunk weights plus a fresh value head."""
        ppm = nnx.eval_shape(lambda: cls(policy.config, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(ppm)
        trunk_state = jax.tree.map(jnp.copy, nnx.to_pure_dict(nnx.state(policy.trunk)))
        head = HEAD_INIT_STD * jax.random.normal(rngs.params(), (policy.config.hidden_size,), jnp.float32)
        nnx.replace_by_pure_dict(state, {"trunk": trunk_state, "value_head": head.astype(policy.config.dtype)})
        return nnx.merge(graphdef, state)

    def raw_scores(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
        """Pre-tanh head output r: [B] fp32 (what HF `*ForSequenceClassification` returns as logits)."""
        hidden, _ = self.trunk(tokens, positions, mask)  # [B, T, D]
        last = jnp.take_along_axis(hidden, last_real_index(mask)[:, None, None], axis=1)[:, 0]  # [B, D]
        return jnp.einsum("BD,D->B", last, self.value_head[...], preferred_element_type=jnp.float32)

    def __call__(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
        """tokens, positions: [B, T]; mask: [B, T] bool -> values [B] fp32 in (-1, 1)."""
        return jnp.tanh(self.raw_scores(tokens, positions, mask))
