"""Token sampling and the jitted decode: first token from the prefill logits, then chunks of k tokens.

Sampling is greedy, temperature, top-k and top-p (nucleus), one PRNG key per row. The decode runs chunks of
k steps under `lax.scan`.

Shapes: B prompts, n samples per prompt, R = B * n rows, V vocabulary, C + T prompt slots (see `kv_pool`),
G decode slots, k tokens per chunk.

Row (p, j) is sample j of prompt p. Its t-th generated token is drawn with key
`fold_in(fold_in(key(seed_p), j), t)`, so it depends only on its prompt, seed, sample index and the model.
The prompt's prefill is computed once and its cache is shared by the n rows of its samples (`models.Prefix`):
each row's own cache holds only its G decode slots, and attention reads the prompt's keys once for all n rows.
The host gets tokens back once per chunk (one small `[R, k]` transfer), never per token.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rstar_jax.models import Decoder, KVCache, Prefix, constrain

_NEG = -1e30
NONFINITE = -1  # the token `sample_tokens` returns for a row whose logits are not finite
_BLOCK = 256  # tokens per block of `_categorical`: about sqrt(V) for vocabularies of 32k-150k


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How the next token is drawn; frozen and hashable, so it is a static argument of the jitted loop.

    Attributes:
      temperature: 0 means greedy (argmax); otherwise logits are divided by it.
      top_p: keep the smallest set of tokens whose probability reaches `top_p` (1.0 disables it).
      top_k: keep the `top_k` most likely tokens (0 or -1 disables it, as vLLM's -1).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingParams: temperature={self.temperature} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams: top_p={self.top_p} must be in (0, 1]")
        if self.top_k < -1:
            raise ValueError(f"SamplingParams: top_k={self.top_k} must be -1, 0 or positive")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _filter_top_k(logits: jax.Array, k: int) -> jax.Array:
    """logits [R, V] with everything below the k-th largest value of each row set to -inf-like."""
    kth = jax.lax.top_k(logits, k)[0][:, -1:]  # [R, 1]
    return jnp.where(logits < kth, _NEG, logits)


def _filter_top_p(logits: jax.Array, p: float) -> jax.Array:
    """logits [R, V] outside each row's nucleus (smallest prefix of sorted tokens with mass >= p) masked."""
    sorted_desc = -jnp.sort(-logits, axis=-1)  # [R, V]
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each sorted token
    keep = mass_before < p  # the top token is always kept
    threshold = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)  # [R, 1]
    return jnp.where(logits < threshold, _NEG, logits)


def _first_positive(mass: jax.Array) -> jax.Array:
    """Index [R] of the first positive entry of each row of mass [R, M] (each row has one)."""
    return jnp.argmax(mass > 0, axis=-1)


def _last_positive(mass: jax.Array) -> jax.Array:
    """Index [R] of the last positive entry of each row of mass [R, M] (each row has one)."""
    return mass.shape[-1] - 1 - jnp.argmax(mass[:, ::-1] > 0, axis=-1)


def _categorical(logits: jax.Array, keys: jax.Array) -> jax.Array:
    """One token [R] int32 per row of logits [R, V] drawn with probability softmax(logits), from one uniform per
    row (key [R]): inverse-CDF sampling over blocks of `_BLOCK` tokens.

    Letters: R rows, V vocabulary (padded to Nb blocks of Bk tokens). The row's unnormalised masses e [R, Nb, Bk]
    are summed per block [R, Nb]; u ~ U(0, total) picks the first block whose running sum exceeds u, then the first
    token of that block whose running sum exceeds the remainder. This costs one pass over [R, V] and two short
    prefix sums where `jax.random.categorical` draws V Gumbel numbers per row (threefry): at [64, 49152] on 2 CPU
    cores 2 ms instead of 84 ms a step. A token of zero mass (masked by top-k / top-p) is never returned: float
    rounding can only move the pick to the nearest token of positive mass in its block or the last positive block.
    """
    R, V = logits.shape
    blocks = -(-V // _BLOCK)
    e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))  # [R, V]; masked logits give 0
    e = jnp.pad(e, ((0, 0), (0, blocks * _BLOCK - V))).reshape(R, blocks, _BLOCK)
    block_mass = jnp.sum(e, axis=-1)  # [R, Nb]
    running = jnp.cumsum(block_mass, axis=-1)  # [R, Nb]
    u = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys) * running[:, -1]  # [R]
    b = jnp.minimum(jnp.sum(running <= u[:, None], axis=-1), _last_positive(block_mass))  # [R]
    take = lambda x, i: jnp.take_along_axis(x, i[:, None], axis=1)[:, 0]
    rest = u - take(running - block_mass, b)  # [R]: u past the blocks before b
    mass = jnp.take_along_axis(e, b[:, None, None], axis=1)[:, 0]  # [R, Bk]
    i = jnp.sum(jnp.cumsum(mass, axis=-1) <= rest[:, None], axis=-1)
    i = jnp.clip(i, _first_positive(mass), _last_positive(mass))
    return (b * _BLOCK + i).astype(jnp.int32)


def sample_tokens(logits: jax.Array, keys: jax.Array, params: SamplingParams) -> jax.Array:
    """Next tokens [R] int32 from logits [R, V] (fp32) and per-row keys [R] (typed PRNG keys); `NONFINITE` for a
    row whose logits hold a NaN or an infinity (the host raises on it: a broken model never samples silently)."""
    bad = ~jnp.all(jnp.isfinite(logits), axis=-1)  # [R]
    if params.greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    else:
        scaled = logits.astype(jnp.float32) / params.temperature
        if params.top_k > 0:
            scaled = _filter_top_k(scaled, min(params.top_k, scaled.shape[-1]))
        if params.top_p < 1.0:
            scaled = _filter_top_p(scaled, params.top_p)
        tokens = _categorical(scaled, keys)
    return jnp.where(bad, NONFINITE, tokens)


def row_keys(seeds: jax.Array, samples: int) -> jax.Array:
    """Per-row keys [P * samples] for P prompt seeds [P] uint32: row (p, j) gets fold_in(key(seed_p), j)."""
    base = jax.vmap(jax.random.key)(seeds)  # [P]
    per_sample = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(samples)))(base)
    return per_sample.reshape(-1)


CACHE_AXES = ("cache_layers", "cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")


def _append_slots(cache: KVCache, slots: int) -> KVCache:
    """`cache` [L, R, S, K, H] with `slots` empty (masked) slots at the end: [L, R, S + slots, K, H]."""
    L, R, _, K, H = cache.k.shape
    zeros = jnp.zeros((L, R, slots, K, H), cache.k.dtype)
    return KVCache(
        k=constrain(jnp.concatenate([cache.k, zeros], axis=2), CACHE_AXES),
        v=constrain(jnp.concatenate([cache.v, zeros], axis=2), CACHE_AXES),
        mask=jnp.concatenate([cache.mask, jnp.zeros((R, slots), bool)], axis=1),
        index=cache.index,
    )


class DecodeState(NamedTuple):
    """Loop state of R = P x n rows (row p*n + j is sample j of prompt p): prefix, the P prompts' keys/values
    [L, P, C + T, K, H], read by their n rows; cache [L, R, G, K, H], each row's generated tokens; last sampled
    tokens [R]; their positions [R]; row keys [R]; t [] int32, index of the next token to sample. With n = 1
    there is nothing to share: prefix is None and cache [L, R, C + T + G, K, H] holds the prompt too."""

    prefix: Prefix | None
    cache: KVCache
    tokens: jax.Array
    positions: jax.Array
    keys: jax.Array
    t: jax.Array


def start(
    logits: jax.Array,
    cache: KVCache,
    lengths: jax.Array,
    keys: jax.Array,
    n: int,
    decode_slots: int,
    params: SamplingParams,
) -> DecodeState:
    """Decode state of R = B * n rows from the prefill of B prompts.

    logits [B, V] of each prompt's last token; cache [L, B, C + T, K, H] (it becomes the shared prefix, not
    repeated per row); lengths [B] prompt lengths (the first generated token's position); keys [R] row keys
    (see `row_keys`).
    """
    rep = lambda x, axis: jnp.repeat(x, n, axis=axis)
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    first = sample_tokens(rep(logits, 0), step_keys, params)
    positions, t = rep(lengths, 0), jnp.ones((), jnp.int32)
    if n == 1:  # nothing to share: the prompt's cache is the row's (the shared path measured 1.1-1.8x slower here)
        return DecodeState(None, _append_slots(cache, decode_slots), first, positions, keys, t)
    L, B, _, K, H = cache.k.shape
    empty = KVCache(
        k=jnp.zeros((L, B * n, 0, K, H), cache.k.dtype),
        v=jnp.zeros((L, B * n, 0, K, H), cache.v.dtype),
        mask=jnp.zeros((B * n, 0), bool),
        index=jnp.zeros((), jnp.int32),
    )
    prefix = Prefix(constrain(cache.k, CACHE_AXES), constrain(cache.v, CACHE_AXES), cache.mask)
    return DecodeState(prefix, _append_slots(empty, decode_slots), first, positions, keys, t)


def select_prompts(state: DecodeState, prompts: jax.Array) -> DecodeState:
    """The decode state of prompts [P'] (indices into the P prompts of `state`, repeats allowed) with all n rows
    of each: drops prompts whose rows have all finished, so later chunks run on fewer. Each row's tokens depend
    only on its prompt's prefix and its own cache, position, key and t."""
    take = lambda x, axis, idx: jnp.take(x, idx, axis=axis)
    if state.prefix is None:  # one row per prompt
        rows, prefix = prompts, None
    else:
        n = state.tokens.shape[0] // state.prefix.mask.shape[0]
        rows = (prompts[:, None] * n + jnp.arange(n, dtype=prompts.dtype)[None]).reshape(-1)
        prefix = Prefix(
            k=constrain(take(state.prefix.k, 1, prompts), CACHE_AXES),
            v=constrain(take(state.prefix.v, 1, prompts), CACHE_AXES),
            mask=take(state.prefix.mask, 0, prompts),
        )
    cache = state.cache
    small = KVCache(
        k=constrain(take(cache.k, 1, rows), CACHE_AXES),
        v=constrain(take(cache.v, 1, rows), CACHE_AXES),
        mask=take(cache.mask, 0, rows),
        index=cache.index,
    )
    pick = lambda x: take(x, 0, rows)
    return DecodeState(prefix, small, pick(state.tokens), pick(state.positions), pick(state.keys), state.t)


def grow(state: DecodeState, slots: int) -> DecodeState:
    """The state with `slots` more empty (masked) decode slots at the end of its rows' caches:
    [L, R, G + slots, K, H]. Decoding starts with few slots and grows them only for rows that run long, since
    every step attends over all G slots."""
    return state._replace(cache=_append_slots(state.cache, slots))


def chunk(model: Decoder, state: DecodeState, k: int, params: SamplingParams) -> tuple[DecodeState, jax.Array]:
    """Feed the last tokens and sample k more per row: returns the new state and tokens [R, k]."""

    def step(s: DecodeState, _: None) -> tuple[DecodeState, jax.Array]:
        R = s.tokens.shape[0]
        logits, cache = model(s.tokens[:, None], s.positions[:, None], jnp.ones((R, 1), bool), s.cache, s.prefix)
        step_keys = jax.vmap(lambda key: jax.random.fold_in(key, s.t))(s.keys)
        nxt = sample_tokens(logits[:, 0], step_keys, params)
        return s._replace(cache=cache, tokens=nxt, positions=s.positions + 1, t=s.t + 1), nxt

    state, tokens = jax.lax.scan(step, state, None, length=k)
    return state, tokens.T
