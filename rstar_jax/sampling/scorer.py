"""`FlaxPPMScorer`: the `interfaces.ValueModel` of the search, on the Flax PPM with prefix-cached prefill.

    scorer = FlaxPPMScorer(ppm, tokenizer, pool_slots=65536)
    values = scorer.score([prompt + steps for steps in candidates])     # float32 [B] in (-1, 1)

The texts of one search share long prefixes (question + steps so far), so they go through the same prefix
machinery as the policy (`prefix_cache`, `kv_pool`) with the PPM's own pool: each text runs only the tokens
past its longest cached prefix, and the value is `tanh(w · h_last)` on the last token's hidden state,
as `models.PPM.__call__` computes it on the full text.

Peak memory is bounded by the configuration, whatever the number of texts: texts are cut in order into calls
of at most `max_rows` texts and `prefill_tokens` padded tokens (`kv_pool.prefill_groups`; rows x bucketed
length of the longest text, one longer text alone), so a call's attention scores [B, N, T, C + T] stay within
`kv_pool.prefill_bytes_bound`.
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


def _score_impl(
    graphdef: Any, state: Any, pool: kv_pool.KVPool, batch: kv_pool.PrefillBatch
) -> tuple[jax.Array, kv_pool.KVPool]:
    """Values [B] of one prefill's texts, and the pool with their new keys/values written."""
    ppm = nnx.merge(graphdef, state)
    hidden, _, pool = kv_pool.prefill(ppm.trunk, pool, batch)  # [B, D]
    raw = jnp.einsum("BD,D->B", hidden, ppm.value_head[...], preferred_element_type=jnp.float32)
    return jnp.tanh(raw), pool


# Module-level program: scorers over the same architecture (each round's PPM) share their compilations.
_SCORE = jax.jit(_score_impl, static_argnames=("graphdef",), donate_argnames=("pool",))


class FlaxPPMScorer:
    """Batched PPM values with KV reuse (implements `interfaces.ValueModel`).

    Args:
      ppm: the `PPM` module.
      tokenizer: its Hugging Face tokenizer (texts encoded with the default special tokens).
      pool_slots: prefix-cache capacity in tokens.
      max_rows: at most this many texts per jitted call.
      prefill_tokens: at most this many padded tokens (rows x bucketed length) per jitted call.
      length_buckets: text-length buckets per doubling (a power of two; see `FlaxPolicy`).
    """

    def __init__(
        self,
        ppm: PPM,
        tokenizer: Any,
        *,
        pool_slots: int = 32768,
        max_rows: int = 256,
        prefill_tokens: int = 16384,
        length_buckets: int = 1,
    ):
        kv_pool.check_per_octave(length_buckets, "FlaxPPMScorer")
        if max_rows < 1 or prefill_tokens < 1:
            raise ValueError(f"FlaxPPMScorer: max_rows={max_rows} and prefill_tokens={prefill_tokens} must be >= 1")
        self.config = ppm.config
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self.prefill_tokens = prefill_tokens
        self.length_buckets = length_buckets
        self._graphdef, self._state = nnx.split(ppm)
        self.cache = PrefixCache(pool_slots)
        self.pool = kv_pool.KVPool.init(ppm.config, pool_slots)

    def clear_cache(self) -> None:
        """Forget every cached prefix; the pool memory is kept."""
        self.cache = PrefixCache(self.cache.num_slots)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Values of B texts: float32 [B] in (-1, 1).

        A text longer than the model's `max_position_embeddings` (a trajectory whose last step and code output
        ran past the policy's context) is scored on its first `max_position_embeddings` tokens, the head that PPM
        training keeps of a long example (`train.batches`), instead of failing the whole batch.
        """
        limit = self.config.max_position_embeddings
        return self.score_ids([list(x)[:limit] for x in self.tokenizer(list(texts))["input_ids"]])

    def score_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Values of B token-id sequences: float32 [B]."""
        for i, ids in enumerate(token_ids):
            if not len(ids) or len(ids) > self.config.max_position_embeddings:
                raise ValueError(
                    f"FlaxPPMScorer: text {i} has {len(ids)} tokens; it must be non-empty and fit "
                    f"max_position_embeddings={self.config.max_position_embeddings}"
                )
        out = []
        multiple = kv_pool.row_multiple()  # the mesh's batch shards (1 without a mesh)
        rows = lambda size: -(-kv_pool.bucket(size, minimum=1) // multiple) * multiple
        groups = kv_pool.prefill_groups(token_ids, self.prefill_tokens, self.max_rows, rows, self.length_buckets)
        for lo, hi in groups:
            part = token_ids[lo:hi]
            batch = kv_pool.plan_prefill(self.cache, part, rows(len(part)), self.length_buckets)
            width = batch.prefix_slots.shape[1] + batch.tokens.shape[1]
            if self.config.sliding_window is not None and width > self.config.sliding_window:
                self.cache.release()
                raise ValueError(
                    f"FlaxPPMScorer: a {width}-slot cache exceeds the model's sliding_window="
                    f"{self.config.sliding_window} (the padded layout measures the window in slots)"
                )
            try:
                values, self.pool = _SCORE(self._graphdef, self._state, self.pool, batch)
            finally:
                self.cache.release()
            out.append(np.asarray(values)[: len(part)])
        values = np.concatenate(out).astype(np.float32) if out else np.zeros((0,), np.float32)
        if not np.isfinite(values).all():
            raise FloatingPointError(
                f"FlaxPPMScorer: {int((~np.isfinite(values)).sum())} of {len(values)} values are NaN or infinite; "
                "the reward model's weights or dtype are broken (float16 overflows easily)"
            )
        return values
