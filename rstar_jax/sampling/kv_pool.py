"""The device KV pool and the prefill that reads cached prefixes from it and writes new tokens into it.

Einsum/shape letters: L layers, B prompts, C cached-prefix slots (bucketed), T prefilled tokens (bucketed),
SLOTS pool slots, K key/value heads, H head dim, D hidden size.

Cache layout of one prefill (row b, cached prefix c_b tokens, suffix s_b tokens):

    slots [0, C):      [ padding | the c_b cached tokens, gathered from the pool ]
    slots [C, C + T):  [ padding | the s_b prefilled tokens ]

Padding slots are masked keys, and positions are explicit (`positions = c_b + 0 .. s_b - 1`), so the gap
between the two regions is invisible to attention and RoPE; the prompt's last token always sits in the last
slot, and decoding appends at slot C + T for every row.

Under `jax.set_mesh(mesh)` the pool and the decode cache are pinned to the model's `cache_*` logical axes
(`models.sharding.LOGICAL_AXIS_RULES`): KV heads over `tensor`, cache rows over `data` x `fsdp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax.models import KVCache, ModelConfig, Trunk, constrain
from rstar_jax.sampling.prefix_cache import SCRATCH_SLOT, PrefixCache

MIN_BUCKET = 16
POOL_AXES = ("cache_layers", None, "cache_kv_heads", "cache_head_dim")  # [L, SLOTS, K, H] under a mesh


def bucket(n: int, minimum: int = MIN_BUCKET) -> int:
    """The static length used for `n`: the next power of two, at least `minimum` (0 stays 0)."""
    if n <= 0:
        return 0
    return max(minimum, 1 << (n - 1).bit_length())


def bucket_rows(n: int, minimum: int = 1) -> int:
    """The static batch size used for `n` rows: the next power of two or 1.5 times one (1, 2, 3, 4, 6, 8, 12,
    ...), at least `minimum`; rows cost compute in proportion, so they are bucketed finer than lengths."""
    size = bucket(n, minimum)
    return size * 3 // 4 if size >= 4 and size * 3 // 4 >= max(n, minimum) else size


class KVPool(NamedTuple):
    """Keys and values of every cached token: k, v [L, SLOTS, K, H]."""

    k: jax.Array
    v: jax.Array

    @staticmethod
    def init(config: ModelConfig, slots: int) -> KVPool:
        shape = (config.num_layers, slots, config.num_kv_heads, config.head_dim)
        return KVPool(jnp.zeros(shape, config.dtype), jnp.zeros(shape, config.dtype))

    @property
    def nbytes(self) -> int:
        return int(self.k.nbytes + self.v.nbytes)


class PrefillBatch(NamedTuple):
    """Host arrays of one prefill (numpy, converted by the jitted call).

    prefix_slots [B, C] int32 (SCRATCH_SLOT on padding), prefix_mask [B, C] bool,
    tokens, positions [B, T] int32 and mask [B, T] bool (left-padded suffixes),
    write_slots [B, T] int32 (pool slot of each suffix token, SCRATCH_SLOT on padding),
    lengths [B] int32 (full prompt lengths, 0 for padding rows).
    """

    prefix_slots: np.ndarray
    prefix_mask: np.ndarray
    tokens: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    write_slots: np.ndarray
    lengths: np.ndarray


def plan_prefill(cache: PrefixCache, prompts: Sequence[Sequence[int]], rows: int) -> PrefillBatch:
    """Reserve cache slots for `prompts` (token ids) and lay out one prefill of `rows` >= len(prompts) rows.

    The caller must call `cache.release()` once the prefill has run.
    """
    plans = [cache.plan(p) for p in prompts]
    T = bucket(max(len(p) - c for p, (c, _, _) in zip(prompts, plans, strict=True)))
    longest_cached = max(c for c, _, _ in plans)
    C = bucket(longest_cached + T) - T if longest_cached else 0  # C + T is a bucket: the decode shapes
    # depend on it alone, not on how the prompt splits into cached and new tokens
    prefix_slots = np.full((rows, C), SCRATCH_SLOT, np.int32)
    prefix_mask = np.zeros((rows, C), bool)
    tokens = np.zeros((rows, T), np.int32)
    positions = np.zeros((rows, T), np.int32)
    mask = np.zeros((rows, T), bool)
    write_slots = np.full((rows, T), SCRATCH_SLOT, np.int32)
    lengths = np.zeros((rows,), np.int32)
    for b, (prompt, (cached, slots, writes)) in enumerate(zip(prompts, plans, strict=True)):
        s = len(prompt) - cached
        if cached:
            prefix_slots[b, C - cached :] = slots
            prefix_mask[b, C - cached :] = True
        tokens[b, T - s :] = prompt[cached:]
        positions[b, T - s :] = np.arange(cached, len(prompt))
        mask[b, T - s :] = True
        write_slots[b, T - s :] = writes
        lengths[b] = len(prompt)
    return PrefillBatch(prefix_slots, prefix_mask, tokens, positions, mask, write_slots, lengths)


def prefill(trunk: Trunk, pool: KVPool, batch: PrefillBatch) -> tuple[jax.Array, KVCache, KVPool]:
    """Run the suffixes over their cached prefixes (traced inside the caller's jit).

    Returns hidden [B, D] of each prompt's last token, the cache [L, B, C + T, K, H] (index C + T) and the
    pool with the suffixes' keys/values written at `write_slots`.
    """
    L, _, K, H = pool.k.shape
    B, C = batch.prefix_slots.shape
    T = batch.tokens.shape[1]
    k_prefix = jnp.take(pool.k, batch.prefix_slots, axis=1)  # [L, B, C, K, H]
    v_prefix = jnp.take(pool.v, batch.prefix_slots, axis=1)
    empty = jnp.zeros((L, B, T, K, H), pool.k.dtype)
    cache = KVCache(
        k=jnp.concatenate([k_prefix, empty], axis=2),
        v=jnp.concatenate([v_prefix, empty], axis=2),
        mask=jnp.concatenate([batch.prefix_mask, jnp.zeros((B, T), bool)], axis=1),
        index=jnp.asarray(C, jnp.int32),
    )
    hidden, cache = trunk(batch.tokens, batch.positions, batch.mask, cache)
    slots = batch.write_slots.reshape(B * T)
    new_k = cache.k[:, :, C:].reshape(L, B * T, K, H)
    new_v = cache.v[:, :, C:].reshape(L, B * T, K, H)
    pool = KVPool(
        constrain(pool.k.at[:, slots].set(new_k), POOL_AXES), constrain(pool.v.at[:, slots].set(new_v), POOL_AXES)
    )
    return hidden[:, -1], cache, pool
