"""The device KV pool and the prefill that reads cached prefixes from it and writes new tokens into it.

Einsum/shape letters: L layers, B prompts, C cached-prefix slots (bucketed), T prefilled tokens (bucketed),
SLOTS pool slots, K key/value heads, H head dim, D hidden size.

Cache layout of one prefill (row b, cached prefix c_b tokens, suffix s_b tokens):

    slots [0, C):      [ padding | the c_b cached tokens, gathered from the pool ]
    slots [C, C + T):  [ padding | the s_b prefilled tokens ]

Padding slots are masked keys, and positions are explicit (`positions = c_b + 0 .. s_b - 1`), so the gap
between the two regions is invisible to attention and RoPE; the prompt's last token always sits in the last
slot, and decoding appends at slot C + T for every row.

Peak memory: `prefill_groups` cuts any number of prompts into calls of at most `prefill_tokens` padded prompt
tokens (rows x bucketed length of the longest prompt, a single longer prompt alone), so one call's activations
are bounded by the configuration, not by how many texts arrive; `prefill_bytes_bound` is that bound.

Under `jax.set_mesh(mesh)` the pool and the decode cache are pinned to the model's `cache_*` logical axes
(`models.sharding.LOGICAL_AXIS_RULES`): KV heads over `tensor`, cache rows over `data` x `fsdp`. Those mesh axes
must divide every batch of rows (`sharding.logical_to_spec` raises otherwise), so callers round their row buckets up
to a multiple of `row_multiple()` (1 without a mesh); the extra rows are padding, as in any bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax.models import KVCache, ModelConfig, Trunk, constrain, logical_to_spec
from rstar_jax.sampling.prefix_cache import SCRATCH_SLOT, PrefixCache

MIN_BUCKET = 16
POOL_AXES = ("cache_layers", None, "cache_kv_heads", "cache_head_dim")  # [L, SLOTS, K, H] under a mesh


def bucket(n: int, minimum: int = MIN_BUCKET, per_octave: int = 1) -> int:
    """The static length used for `n` (0 stays 0): the next power of two p, at least `minimum`; with
    `per_octave` = m > 1 (a power of two) the next of the m lengths p/2 + j * p/(2m), j = 1 .. m, that split the
    octave below p evenly (m = 4: 64, 80, 96, 112, 128, 160, ...), where those are multiples of 8 and above
    `minimum` (shorter octaves keep powers of two). Finer buckets pad less and compile more programs."""
    if per_octave != 1:
        check_per_octave(per_octave, "kv_pool.bucket")
    if n <= 0:
        return 0
    p = max(minimum, 1 << (n - 1).bit_length())
    step = p // (2 * per_octave)
    if step < 8 or p <= minimum:
        return p
    return max(minimum, p // 2 + -(-(n - p // 2) // step) * step)


def check_per_octave(per_octave: int, owner: str) -> None:
    """Raises ValueError naming `owner` unless `per_octave` (length buckets per doubling) is a power of two."""
    if per_octave < 1 or per_octave & (per_octave - 1):
        raise ValueError(f"{owner}: length_buckets={per_octave} must be a power of two (1, 2, 4, 8, ...)")


def bucket_rows(n: int, minimum: int = 1, multiple: int = 1) -> int:
    """The static batch size used for `n` rows: the next power of two or 1.5 times one (1, 2, 3, 4, 6, 8, 12,
    ...), at least `minimum`, rounded up to a multiple of `multiple` (`row_multiple()`: the mesh's batch shards);
    rows cost compute in proportion, so they are bucketed finer than lengths."""
    size = bucket(n, minimum)
    size = size * 3 // 4 if size >= 4 and size * 3 // 4 >= max(n, minimum) else size
    return -(-size // multiple) * multiple


def row_multiple() -> int:
    """How many shards the mesh set by `jax.set_mesh` splits batch rows into (the mesh axes of the `act_batch` and
    `cache_batch` logical axes); 1 without a mesh. Every row bucket must be a multiple of it."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    sizes = []
    for name in ("act_batch", "cache_batch"):
        axes = logical_to_spec((name,))[0]
        sizes.append(math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ())))
    return math.lcm(*sizes)


def prefill_groups(
    sequences: Sequence[Sequence[int]],
    prefill_tokens: int,
    max_rows: int,
    rows: Callable[[int], int] = bucket_rows,
    per_octave: int = 1,
) -> list[tuple[int, int]]:
    """Cut `sequences` (token ids, in order) into contiguous groups `[lo, hi)` of one prefill call each.

    A group has at most `max_rows` sequences and `rows(len(group)) * bucket(longest in group, per_octave=...)
    <= prefill_tokens` (`rows`: the caller's row bucketing); a single sequence over the budget goes alone. Greedy
    and in order, so sequences that fit in `max_rows`-sized chunks give exactly those chunks.
    """
    if prefill_tokens < 1 or max_rows < 1:
        raise ValueError(f"prefill_groups: prefill_tokens={prefill_tokens} and max_rows={max_rows} must be >= 1")
    groups: list[tuple[int, int]] = []
    lo, longest = 0, 0
    for i, seq in enumerate(sequences):
        grown = max(longest, len(seq))
        size = i - lo + 1
        if size > 1 and (size > max_rows or rows(size) * bucket(grown, per_octave=per_octave) > prefill_tokens):
            groups.append((lo, i))
            lo, grown = i, len(seq)
        longest = grown
    if len(sequences):
        groups.append((lo, len(sequences)))
    return groups


def decode_cache_bytes(
    config: ModelConfig, prefill_tokens: int, max_len: int, samples: int, decode_rows: int, decode_slots: int
) -> int:
    """Upper bound in bytes of a policy's decode cache [L, R, C + T + G, K, H] (keys and values) after a prefill of
    `prefill_groups` groups of prompts up to `max_len` tokens, `samples` rows per prompt.

    R = bucket_rows(B) x samples rows with bucket_rows(B) x T <= P (T = bucket(max_len),
    P = max(prefill_tokens, T)) and C + T <= 2T prompt slots, so R x (C + T) <= samples x 2P; the
    R x G decode slots are at most `decode_rows` x `decode_slots`.
    """
    c = config
    T = bucket(max_len)
    P = max(prefill_tokens, T)
    slots = samples * 2 * P + decode_rows * decode_slots
    return 2 * c.num_layers * slots * c.num_kv_heads * c.head_dim * np.dtype(c.dtype).itemsize


def prefill_bytes_bound(
    config: ModelConfig,
    prefill_tokens: int,
    max_len: int,
    samples: int = 0,
    decode_rows: int = 0,
    decode_slots: int = 0,
) -> int:
    """Upper bound in bytes of one prefill call's temporaries plus outputs (parameters and the pool excluded:
    they are fixed by the configuration), for groups made by `prefill_groups` of prompts up to `max_len` tokens.

    With T = bucket(max_len) and P = max(prefill_tokens, T) padded tokens per call, the cache holds
    C + T <= 2T slots, so per layer: attention scores, masked scores, exponentials and probabilities
    [B, N, T, C + T] fp32 (4 x P x N x 2T x 4 bytes) and the mask [B, T, C + T]; the prefill KV cache
    [L, B, C + T, K, H] of keys and values counted three times (gathered prefix, scan carry, output); the MLP
    and residual activations [B, T, F], [B, T, D]. A policy's prefill (`samples` > 0) also makes the decode
    cache (`decode_cache_bytes`, counted twice: repeated rows, then with decode slots) and samples the first
    tokens from logits [R, V] of at most `decode_rows` rows.
    """
    c = config
    item = np.dtype(c.dtype).itemsize
    T = bucket(max_len)
    P = max(prefill_tokens, T)
    attention = P * 2 * T * (4 * c.num_heads * 4 + 1)
    cache = 3 * 2 * c.num_layers * 2 * P * c.num_kv_heads * c.head_dim * item
    activations = P * (4 * c.intermediate_size + 8 * c.hidden_size) * 4
    decode = 0
    if samples:
        decode = 2 * decode_cache_bytes(config, prefill_tokens, max_len, samples, decode_rows, decode_slots)
        decode += decode_rows * c.vocab_size * 4 * 4
    return attention + cache + activations + decode


def decode_bytes_bound(
    config: ModelConfig, prefill_tokens: int, max_len: int, samples: int, decode_rows: int, decode_slots: int
) -> int:
    """Upper bound in bytes of one decode chunk's temporaries plus outputs (the donated state excluded): a
    copy of the cache (`decode_cache_bytes`), and per step the attention [R, N, 1, S] fp32 over
    S <= 2 bucket(max_len) + decode_slots slots, the mask, and logits [R, V] fp32 (four of each)."""
    c = config
    S = 2 * bucket(max_len) + decode_slots
    per_step = decode_rows * (4 * c.num_heads * S * 4 + S + 4 * c.vocab_size * 4 + 8 * c.hidden_size * 4)
    return decode_cache_bytes(config, prefill_tokens, max_len, samples, decode_rows, decode_slots) + per_step


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


def plan_prefill(cache: PrefixCache, prompts: Sequence[Sequence[int]], rows: int, per_octave: int = 1) -> PrefillBatch:
    """Reserve cache slots for `prompts` (token ids) and lay out one prefill of `rows` >= len(prompts) rows;
    T and C + T are `bucket(..., per_octave=per_octave)` lengths.

    The caller must call `cache.release()` once the prefill has run.
    """
    plans = [cache.plan(p) for p in prompts]
    T = bucket(max(len(p) - c for p, (c, _, _) in zip(prompts, plans, strict=True)), per_octave=per_octave)
    longest_cached = max(c for c, _, _ in plans)
    # C + T is a bucket: the decode shapes depend on it alone, not on how the prompt splits into cached and new tokens
    C = bucket(longest_cached + T, per_octave=per_octave) - T if longest_cached else 0
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
