"""The sampling engine: batched step generation and PPM scoring with KV reuse along the search tree.

from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams
policy = FlaxPolicy(decoder, tokenizer, SamplingParams(temperature=0.7))
steps = policy.generate(prompts, n=8, stop=["<end_of_step>"], max_tokens=256, seed=[0, 1])
values = FlaxPPMScorer(ppm, tokenizer).score(texts)          # float32 [B] in (-1, 1)
remote = CompletionsPolicy("http://127.0.0.1:8000/v1", "served-model")  # an OpenAI-compatible server
"""

from rstar_jax.sampling.decode import SamplingParams, row_keys, sample_tokens
from rstar_jax.sampling.kv_pool import KVPool, PrefillBatch, bucket, bucket_rows, plan_prefill, prefill
from rstar_jax.sampling.policy import FlaxPolicy, default_eos_ids, seed_to_u32
from rstar_jax.sampling.prefix_cache import CacheStats, PrefixCache
from rstar_jax.sampling.remote import CompletionsError, CompletionsPolicy
from rstar_jax.sampling.scorer import FlaxPPMScorer
from rstar_jax.sampling.stops import StopScanner

__all__ = [
    "CacheStats",
    "CompletionsError",
    "CompletionsPolicy",
    "FlaxPPMScorer",
    "FlaxPolicy",
    "KVPool",
    "PrefillBatch",
    "PrefixCache",
    "SamplingParams",
    "StopScanner",
    "bucket",
    "bucket_rows",
    "default_eos_ids",
    "plan_prefill",
    "prefill",
    "row_keys",
    "sample_tokens",
    "seed_to_u32",
]
