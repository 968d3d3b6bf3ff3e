"""`FlaxPolicy`: the `interfaces.Policy` of the search, on the Flax decoder with prefix-cached prefill.

    policy = FlaxPolicy(decoder, tokenizer, SamplingParams(temperature=0.7), pool_slots=65536)
    steps = policy.generate(prompts, n=16, stop=["<end_of_step>", "<end_of_code>"], max_tokens=1024, seed=seeds)
    policy.cache.stats.hit_rate      # share of prompt tokens served from the prefix cache

One call: prompts are tokenized, cut in order into micro-batches of at most `max_rows // n` prompts and
`prefill_tokens` padded prompt tokens (`kv_pool.prefill_groups`: rows x bucketed length of the longest prompt,
one longer prompt alone), and for each micro-batch one jitted prefill (cached prefixes gathered from the KV
pool, new tokens written into it), then jitted chunks of `chunk` decode steps. The host receives `[R, chunk]`
tokens per chunk, checks stop strings (`stops.StopScanner`) and stops once every row is finished. Between
chunks the batch sheds its finished rows (down to `MIN_ROWS`), and the cache starts with `2 * chunk` decode
slots, doubled only when a row runs longer: every decode step attends over all cache slots of all rows, so on
CPU the step cost is about proportional to rows x slots. A row's tokens depend only on its own prompt, seed
and sample index.
Peak memory is set by the configuration, not by the number of prompts: a prefill stays within
`kv_pool.prefill_bytes_bound` (attention [B, N, T, C + T] with B x T <= prefill_tokens and C + T <= 2T);
the decode cache [L, R, C + T + G, K, H] has R = bucket_rows(B) x n <= bucket_rows(max_rows // n) x n rows,
C + T <= 2 x bucket(prompt length) and G <= bucket(max_tokens) slots, both under max_position_embeddings,
and R x (C + T) <= 2 n x prefill_tokens (a longer prompt alone: 2 n x its bucket), so it stays within
`kv_pool.decode_cache_bytes`; a decode step's attention is [R, N, 1, C + T + G] (`kv_pool.decode_bytes_bound`).
Static shapes come from buckets (powers of two and 1.5 times them for rows; for cached and new prompt lengths
powers of two or, with `length_buckets` = m, m lengths per doubling; powers of two for decode slots), so a long
search compiles a bounded set of programs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.models import Decoder
from rstar_jax.sampling import decode, kv_pool
from rstar_jax.sampling.decode import SamplingParams, row_keys
from rstar_jax.sampling.prefix_cache import PrefixCache
from rstar_jax.sampling.stops import StopScanner


def seed_to_u32(seed: int) -> int:
    """A request seed (any Python int) folded to the uint32 a JAX key is made from."""
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    return (s ^ (s >> 32)) & 0xFFFFFFFF


def default_eos_ids(config: Any, tokenizer: Any) -> tuple[int, ...]:
    """EOS ids from the model config (int or list) and the tokenizer's eos token."""
    ids = config.eos_token_id
    found = set(ids if isinstance(ids, tuple) else () if ids is None else (ids,))
    if getattr(tokenizer, "eos_token_id", None) is not None:
        found.add(int(tokenizer.eos_token_id))
    return tuple(sorted(found))


def _prefill_impl(
    graphdef: Any,
    state: Any,
    pool: kv_pool.KVPool,
    batch: kv_pool.PrefillBatch,
    seeds: jax.Array,
    n: int,
    decode_slots: int,
    params: SamplingParams,
) -> tuple[decode.DecodeState, kv_pool.KVPool]:
    """Prefill B prompts over their cached prefixes and sample each row's first token (seeds [B] uint32)."""
    model = nnx.merge(graphdef, state)
    hidden, cache, pool = kv_pool.prefill(model.trunk, pool, batch)
    logits = model.logits(hidden[:, None])[:, 0]  # [B, V]
    keys = row_keys(seeds, n)
    return decode.start(logits, cache, batch.lengths, keys, n, decode_slots, params), pool


def _chunk_impl(
    graphdef: Any, state: Any, dstate: decode.DecodeState, k: int, params: SamplingParams
) -> tuple[decode.DecodeState, jax.Array]:
    return decode.chunk(nnx.merge(graphdef, state), dstate, k, params)


# Module-level programs: policies over the same model architecture share their compilations.
_PREFILL = jax.jit(
    _prefill_impl, static_argnames=("graphdef", "n", "decode_slots", "params"), donate_argnames=("pool",)
)
_CHUNK = jax.jit(_chunk_impl, static_argnames=("graphdef", "k", "params"), donate_argnames=("dstate",))
_SELECT = jax.jit(decode.select_prompts)
_GROW = jax.jit(decode.grow, static_argnames=("slots",))
MIN_ROWS = 8  # finished prompts are dropped between chunks down to this many rows (smaller batches save little)


class FlaxPolicy:
    """Samples reasoning steps with the Flax decoder (implements `interfaces.Policy`).

    Args:
      model: the policy `Decoder` (any dtype; placed where it is).
      tokenizer: its Hugging Face tokenizer (prompts are encoded with the tokenizer's default special tokens,
        as vLLM does).
      sampling: temperature / top-p / top-k (temperature 0 is greedy); default: plain sampling at T = 1.
      pool_slots: prefix-cache capacity in tokens (KV pool [L, pool_slots, K, H] on the device).
      max_rows: at most this many rows (prompts x n) decode together.
      prefill_tokens: at most this many padded prompt tokens (prompts x bucketed length) per prefill call.
      chunk: decode steps per jitted chunk (a power of two); the host checks stop strings and drops finished
        rows once per chunk.
      eos_ids: ids that end a sample; default: the config's and tokenizer's EOS.
      length_buckets: prompt-length buckets per doubling (a power of two, `kv_pool.bucket`'s `per_octave`): 1
        pads prompts to powers of two (fewest programs to compile); 4 pads a 69-token prompt to 80 instead of
        128, which prefills fewer tokens and shortens every decode step's attention.
    """

    def __init__(
        self,
        model: Decoder,
        tokenizer: Any,
        sampling: SamplingParams | None = None,
        *,
        pool_slots: int = 32768,
        max_rows: int = 256,
        prefill_tokens: int = 16384,
        chunk: int = 16,
        eos_ids: Sequence[int] | None = None,
        length_buckets: int = 1,
    ):
        kv_pool.check_per_octave(length_buckets, "FlaxPolicy")
        if chunk < 1 or chunk & (chunk - 1):
            raise ValueError(f"FlaxPolicy: chunk={chunk} must be a power of two")
        if max_rows < 1 or prefill_tokens < 1:
            raise ValueError(f"FlaxPolicy: max_rows={max_rows} and prefill_tokens={prefill_tokens} must be >= 1")
        self.config = model.config
        self.tokenizer = tokenizer
        self.sampling = sampling if sampling is not None else SamplingParams()
        self.max_rows = max_rows
        self.prefill_tokens = prefill_tokens
        self.chunk = chunk
        self.length_buckets = length_buckets
        self.eos_ids = tuple(default_eos_ids(model.config, tokenizer) if eos_ids is None else eos_ids)
        self._graphdef, self._state = nnx.split(model)
        self.cache = PrefixCache(pool_slots)
        self.pool = kv_pool.KVPool.init(model.config, pool_slots)

    def generate(
        self, prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, seed: Sequence[int]
    ) -> list[list[Step]]:
        """B prompts -> B lists of n `Step`s (see `interfaces.Policy.generate`)."""
        if not prompts:
            return []
        ids = [list(x) for x in self.tokenizer(list(prompts))["input_ids"]]
        fits = [i for i, p in enumerate(ids) if len(p) + max_tokens <= self.config.max_position_embeddings]
        rows = self.decode_ids([ids[i] for i in fits], n, stop, max_tokens, [seed[i] for i in fits]) if fits else []
        # A prompt with no room left for `max_tokens` ends there: n empty LENGTH steps (the search makes them
        # TOO_DEEP dead ends) instead of an error that would stop every other problem of the batch.
        out = [[Step("", FinishReason.LENGTH, None, 0)] * n for _ in ids]
        for i, r in zip(fits, rows, strict=True):
            out[i] = [s.step for s in r if s.step is not None]
        return out

    def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], n: int, max_tokens: int, seed: Sequence[int]
    ) -> list[list[list[int]]]:
        """Token-level generation: B prompts of ids -> B lists of n generated id lists (EOS excluded)."""
        return [[s.tokens for s in r] for r in self.decode_ids(prompt_ids, n, (), max_tokens, seed)]

    def decode_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: Sequence[int],
    ) -> list[list[StopScanner]]:
        """Decodes n samples of every prompt of ids: the finished `StopScanner` of every (prompt, sample), in
        prompt order."""
        if len(seed) != len(prompt_ids):
            raise ValueError(f"FlaxPolicy: {len(prompt_ids)} prompts but {len(seed)} seeds (one per prompt)")
        if n < 1 or max_tokens < 1:
            raise ValueError(f"FlaxPolicy: n={n} and max_tokens={max_tokens} must be >= 1")
        for i, p in enumerate(prompt_ids):
            if not len(p) or len(p) + max_tokens > self.config.max_position_embeddings:
                raise ValueError(
                    f"FlaxPolicy: prompt {i} has {len(p)} tokens; with max_tokens={max_tokens} it must fit "
                    f"max_position_embeddings={self.config.max_position_embeddings} and be non-empty"
                )
        per_batch = max(1, self.max_rows // n)
        rows = functools.partial(kv_pool.bucket_rows, multiple=kv_pool.row_multiple())
        out: list[list[StopScanner]] = []
        for lo, hi in kv_pool.prefill_groups(prompt_ids, self.prefill_tokens, per_batch, rows, self.length_buckets):
            out.extend(self._decode_batch(prompt_ids[lo:hi], n, stop, max_tokens, seed[lo:hi], rows))
        return out

    def _decode_batch(
        self,
        prompt_ids: Sequence[Sequence[int]],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: Sequence[int],
        bucket_rows: Callable[..., int],
    ) -> list[list[StopScanner]]:
        """Prefill and decode one group of prompts; `bucket_rows`: the row bucketing (`kv_pool.bucket_rows` with
        the mesh's `multiple`)."""
        rows = bucket_rows(len(prompt_ids))
        batch = kv_pool.plan_prefill(self.cache, prompt_ids, rows, self.length_buckets)
        seeds = np.zeros((rows,), np.uint32)
        seeds[: len(seed)] = [seed_to_u32(s) for s in seed]
        steps = max_tokens - 1  # the first token comes from the prefill
        k, decode_slots = self.decode_shape(max_tokens)
        slots, used = min(decode_slots, 2 * k), 0  # decode slots in the cache, and written so far
        window = self.config.sliding_window
        width = batch.prefix_slots.shape[1] + batch.tokens.shape[1] + decode_slots
        if window is not None and width > window:
            self.cache.release()
            raise ValueError(
                f"FlaxPolicy: a {width}-slot cache exceeds the model's sliding_window={window}; the padded cache "
                "layout measures the window in slots, so send shorter prompts or a smaller max_tokens"
            )
        try:
            dstate, self.pool = _PREFILL(
                self._graphdef,
                self._state,
                self.pool,
                batch,
                jnp.asarray(seeds),
                n=n,
                decode_slots=slots,
                params=self.sampling,
            )
        finally:
            self.cache.release()
        scanners = [
            [StopScanner(self.tokenizer, stop, self.eos_ids, max_tokens, p) for _ in range(n)] for p in prompt_ids
        ]
        flat = [s for row in scanners for s in row]
        live = list(range(len(prompt_ids)))  # device prompt p decodes the n scanners of prompt live[p]
        self._feed(flat, live, n, np.asarray(dstate.tokens)[:, None])
        for _ in range(-(-steps // k) if steps else 0):
            running = [p for p, i in enumerate(live) if not all(s.done for s in scanners[i])]
            if not running:
                break
            prompts = dstate.tokens.shape[0] // n
            floor = min(-(-MIN_ROWS // n), prompts)
            size = bucket_rows(len(running), minimum=floor)
            if size < prompts:  # finished prompts leave the batch (extra ones repeat a live one)
                dstate = _SELECT(dstate, jnp.asarray(running + running[:1] * (size - len(running)), jnp.int32))
                live = [live[p] for p in running]
            if used + k > slots:  # long rows: double the decode slots (only the first chunks pay for them all)
                dstate, slots = _GROW(dstate, slots=slots), 2 * slots
            dstate, toks = _CHUNK(self._graphdef, self._state, dstate, k=k, params=self.sampling)
            used += k
            self._feed(flat, live, n, np.asarray(toks))
        return scanners

    def clear_cache(self) -> None:
        """Forget every cached prefix (e.g. when a problem's tree is done); the pool memory is kept."""
        self.cache = PrefixCache(self.cache.num_slots)

    def decode_shape(self, max_tokens: int) -> tuple[int, int]:
        """(tokens per chunk, decode slots G) for a token limit: short steps decode in shorter chunks."""
        steps = max_tokens - 1  # the first token comes from the prefill
        k = min(self.chunk, kv_pool.bucket(steps, minimum=1))
        return k, kv_pool.bucket(steps, minimum=k)

    def compile_seconds(self, prompt_ids: Sequence[Sequence[int]], n: int, max_tokens: int) -> tuple[float, float]:
        """Ahead-of-time compile time (prefill, one decode chunk) of the programs `decode_ids` would use on these
        prompts with an empty prefix cache; compiles without running and without touching the cache."""
        k, decode_slots = self.decode_shape(max_tokens)
        scratch = PrefixCache(sum(map(len, prompt_ids)) + 1)
        rows = kv_pool.bucket_rows(len(prompt_ids), multiple=kv_pool.row_multiple())
        batch = kv_pool.plan_prefill(scratch, prompt_ids, rows, self.length_buckets)
        seeds = jnp.zeros((batch.lengths.shape[0],), jnp.uint32)
        static = dict(n=n, decode_slots=min(decode_slots, 2 * k), params=self.sampling)
        start = time.perf_counter()
        _PREFILL.lower(self._graphdef, self._state, self.pool, batch, seeds, **static).compile()
        prefill_s = time.perf_counter() - start
        dstate = jax.eval_shape(
            lambda st, pool, b, sd: _prefill_impl(self._graphdef, st, pool, b, sd, **static)[0],
            self._state,
            self.pool,
            batch,
            seeds,
        )
        start = time.perf_counter()
        if decode_slots:
            _CHUNK.lower(self._graphdef, self._state, dstate, k=k, params=self.sampling).compile()
        return prefill_s, time.perf_counter() - start

    @staticmethod
    def _feed(scanners: list[StopScanner], live: list[int], n: int, tokens: np.ndarray) -> None:
        """tokens [P_padded * n, k]: device row p*n + j goes to scanners[live[p]*n + j] (prompts past `live` are
        padding; a finished row's tokens are ignored by its scanner)."""
        real = tokens[: len(live) * n]
        broken = int(np.any(real == decode.NONFINITE, axis=1).sum())
        if broken:
            raise FloatingPointError(
                f"FlaxPolicy: the model's logits hold NaN or infinite values in {broken} of {len(real)} rows; its "
                "weights or dtype are broken (float16 overflows easily: load it in bfloat16 or float32)"
            )
        for p, i in enumerate(live):
            for j in range(n):
                scanners[i * n + j].feed(real[p * n + j])
