"""`FlaxPPMScorer`: the `interfaces.ValueModel` of the search, on the Flax PPM with prefix-cached prefill.

    scorer = FlaxPPMScorer(ppm, tokenizer, pool_slots=65536)
    values = scorer.score([prompt + steps for steps in candidates])     # float32 [B] in (-1, 1)

The texts of one search share long prefixes (question + steps so far), so they go through the same prefix
machinery as the policy (`prefix_cache`, `kv_pool`) with the PPM's own pool: each text runs only the tokens
past its longest cached prefix, and the value is `tanh(w · h_last)` on the last token's hidden state,
as `models.PPM.__call__` computes it on the full text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rstar_jax.models import PPM
from rstar_jax.sampling import kv_pool
from rstar_jax.sampling.prefix_cache import PrefixCache


class FlaxPPMScorer:
    """Batched PPM values with KV reuse (implements `interfaces.ValueModel`).

    Args:
      ppm: the `PPM` module.
      tokenizer: its Hugging Face tokenizer (texts encoded with the default special tokens).
      pool_slots: prefix-cache capacity in tokens.
      max_rows: at most this many texts per jitted call.
    """

    def __init__(self, ppm: PPM, tokenizer: Any, *, pool_slots: int = 32768, max_rows: int = 256):
        self.config = ppm.config
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self._graphdef, self._state = nnx.split(ppm)
        self.cache = PrefixCache(pool_slots)
        self.pool = kv_pool.KVPool.init(ppm.config, pool_slots)
        self._jit = jax.jit(self._impl, donate_argnames=("pool",))

    def _impl(self, state: Any, pool: kv_pool.KVPool, batch: kv_pool.PrefillBatch) -> tuple[jax.Array, kv_pool.KVPool]:
        ppm = nnx.merge(self._graphdef, state)
        hidden, _, pool = kv_pool.prefill(ppm.trunk, pool, batch)  # [B, D]
        raw = jnp.einsum("BD,D->B", hidden, ppm.value_head[...], preferred_element_type=jnp.float32)
        return jnp.tanh(raw), pool

    def clear_cache(self) -> None:
        """Forget every cached prefix; the pool memory is kept."""
        self.cache = PrefixCache(self.cache.num_slots)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Values of B texts: float32 [B] in (-1, 1)."""
        return self.score_ids([list(x) for x in self.tokenizer(list(texts))["input_ids"]])

    def score_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Values of B token-id sequences: float32 [B]."""
        for i, ids in enumerate(token_ids):
            if not len(ids) or len(ids) > self.config.max_position_embeddings:
                raise ValueError(
                    f"FlaxPPMScorer: text {i} has {len(ids)} tokens; it must be non-empty and fit "
                    f"max_position_embeddings={self.config.max_position_embeddings}"
                )
        out = []
        for lo in range(0, len(token_ids), self.max_rows):
            part = token_ids[lo : lo + self.max_rows]
            batch = kv_pool.plan_prefill(self.cache, part, kv_pool.bucket(len(part), minimum=1))
            width = batch.prefix_slots.shape[1] + batch.tokens.shape[1]
            if self.config.sliding_window is not None and width > self.config.sliding_window:
                self.cache.release()
                raise ValueError(
                    f"FlaxPPMScorer: a {width}-slot cache exceeds the model's sliding_window="
                    f"{self.config.sliding_window} (the padded layout measures the window in slots)"
                )
            try:
                values, self.pool = self._jit(self._state, self.pool, batch)
            finally:
                self.cache.release()
            out.append(np.asarray(values)[: len(part)])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0,), np.float32)
