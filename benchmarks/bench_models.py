"""Model-family figures on this machine: compile time vs depth, prefill and cached-decode throughput.

    python -m benchmarks.bench_models [--hidden=256] [--batch=8] [--prompt=128] [--decode=32]

Prints one line per measurement. Layers are scanned, so compile time should stay flat as depth grows.
Timings are wall-clock after `block_until_ready`; the first call of each jitted function is reported as
compile time and excluded from throughput.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
from flax import nnx

from rstar_jax.models import Decoder, KVCache, ModelConfig, count_params


def _config(hidden: int, layers: int, vocab: int) -> ModelConfig:
    return ModelConfig(
        model_type="qwen2",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_layers=layers,
        num_heads=max(hidden // 64, 2),
        num_kv_heads=max(hidden // 256, 1),
        head_dim=64 if hidden >= 128 else hidden // 2,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        qkv_bias=True,
    )


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def bench(hidden: int, layers: int, vocab: int, batch: int, prompt: int, decode: int) -> None:
    config = _config(hidden, layers, vocab)
    model = Decoder(config, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def prefill(state, tokens, positions, mask, cache):
        return nnx.merge(graphdef, state)(tokens, positions, mask, cache)

    @functools.partial(jax.jit, donate_argnums=4)  # the cache is updated in place
    def step(state, tokens, positions, mask, cache):
        logits, cache = nnx.merge(graphdef, state)(tokens, positions, mask, cache)
        return jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), cache

    tokens = jax.random.randint(jax.random.key(0), (batch, prompt), 0, vocab, jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(prompt, dtype=jnp.int32), (batch, prompt))
    mask = jnp.ones((batch, prompt), bool)
    cache = KVCache.init(config, batch, prompt + decode + 1)
    (_, warm_cache), compile_prefill = _timed(prefill, state, tokens, positions, mask, cache)
    (_, cache2), run_prefill = _timed(prefill, state, tokens, positions, mask, cache)
    nxt = tokens[:, -1:]
    one = jnp.ones((batch, 1), bool)
    (_, cache2), compile_step = _timed(step, state, nxt, positions[:, -1:] + 1, one, cache2)
    start = time.perf_counter()
    for t in range(decode):
        tok, cache2 = step(state, nxt, jnp.full((batch, 1), prompt + 1 + t, jnp.int32), one, cache2)
        nxt = tok[:, None]
    jax.block_until_ready(nxt)
    run_decode = time.perf_counter() - start
    print(
        f"params={count_params(model) / 1e6:.2f}M hidden={hidden} layers={layers} batch={batch} "
        f"compile_prefill_s={compile_prefill:.2f} compile_decode_s={compile_step:.2f} "
        f"prefill_tok_per_s={batch * prompt / run_prefill:,.0f} "
        f"decode_tok_per_s={batch * decode / run_decode:,.0f} decode_ms_per_step={1e3 * run_decode / decode:.1f}"
    )
    del warm_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 8, 32])
    args = parser.parse_args()
    print(f"backend={jax.default_backend()} devices={jax.device_count()} jax={jax.__version__}")
    for layers in args.layers:
        bench(args.hidden, layers, args.vocab, args.batch, args.prompt, args.decode)


if __name__ == "__main__":
    main()
