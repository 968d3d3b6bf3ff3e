"""Finer prompt-length buckets (`length_buckets` = `kv_pool.bucket`'s `per_octave`): the grid itself, and the
policy and the PPM scorer giving the same tokens and values with them as with powers of two."""

import dataclasses

import numpy as np
import pytest
from flax import nnx
from helpers_hf import hf_and_decoder
from test_sampling_policy import _hf_greedy, _NoTokenizer
from test_sampling_prefix import _direct_values

from configs import micro
from rstar_jax.config_validation import ConfigError, validate
from rstar_jax.models import PPM
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams, kv_pool


def test_bucket_splits_each_doubling_into_per_octave_steps_of_at_least_8():
    four = [kv_pool.bucket(n, per_octave=4) for n in (1, 16, 17, 33, 40, 41, 64, 65, 69, 81, 128, 129, 200, 700)]
    assert four == [16, 16, 32, 40, 40, 48, 64, 80, 80, 96, 128, 160, 224, 768]
    assert [kv_pool.bucket(n, per_octave=2) for n in (33, 49, 69, 97, 130)] == [48, 64, 96, 128, 192]
    assert [kv_pool.bucket(n) for n in (0, 17, 69, 129)] == [0, 32, 128, 256]  # per_octave=1: powers of two
    assert kv_pool.bucket(0, per_octave=4) == 0 and kv_pool.bucket(5, minimum=1, per_octave=4) == 8
    for per_octave in (2, 4, 8, 16):
        for n in range(1, 1100):
            got, p = kv_pool.bucket(n, per_octave=per_octave), kv_pool.bucket(n)
            assert n <= got <= p and got % 8 == 0 and (got == p or got > p // 2), (n, per_octave, got)


@pytest.mark.parametrize("bad", [0, 3, 12])
def test_length_buckets_must_be_a_power_of_two(bad):
    with pytest.raises(ValueError, match=f"FlaxPolicy: length_buckets={bad} must be a power of two"):
        FlaxPolicy(None, None, length_buckets=bad)  # checked before the model is read
    with pytest.raises(ValueError, match=f"length_buckets={bad} must be a power of two"):
        kv_pool.bucket(100, per_octave=bad)
    cfg = micro.get_config()
    cfg.model = dataclasses.replace(cfg.model, length_buckets=bad)
    with pytest.raises(ConfigError, match="config.model.length_buckets"):
        validate(cfg)


@pytest.fixture
def layouts(monkeypatch):
    """Records (T, C + T) of every prefill the policy or the scorer lays out."""
    seen, plan = [], kv_pool.plan_prefill

    def recording(*args, **kwargs):
        batch = plan(*args, **kwargs)
        seen.append((batch.tokens.shape[1], batch.prefix_slots.shape[1] + batch.tokens.shape[1]))
        return batch

    monkeypatch.setattr(kv_pool, "plan_prefill", recording)
    return seen


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return hf_and_decoder("llama", tmp_path_factory.mktemp("llama"))


def test_greedy_tokens_with_quarter_octave_buckets_match_transformers_with_and_without_cached_prefixes(llama, layouts):
    hf, model = llama
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 90, size=n).tolist() for n in (66, 69, 71, 58)]
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(0.0), pool_slots=4096, eos_ids=(), length_buckets=4)
    got = policy.generate_ids(prompts, 1, 20, seed=[0, 1, 2, 3])
    assert layouts == [(80, 80)]  # T = 80, not 128
    assert [r[0] for r in got] == _hf_greedy(hf, prompts, 20).tolist()
    longer = [p + [5, 6, 7] for p in prompts]
    hits = policy.cache.stats.hit_tokens
    got = policy.generate_ids(longer, 1, 20, seed=[0, 1, 2, 3])
    assert policy.cache.stats.hit_tokens > hits
    assert layouts[1] == (16, 96)  # cached prefixes: C + T = bucket(71 + 16) = 96, not 128
    assert [r[0] for r in got] == _hf_greedy(hf, longer, 20).tolist()


def test_ppm_values_with_quarter_octave_buckets_match_the_full_forward(llama, layouts):
    _, model = llama
    ppm = PPM.from_policy(model, nnx.Rngs(5))
    rng = np.random.default_rng(1)
    texts = [rng.integers(3, 90, size=n).tolist() for n in (70, 66, 45, 9)]
    scorer = FlaxPPMScorer(ppm, None, pool_slots=2048, length_buckets=4)
    np.testing.assert_allclose(scorer.score_ids(texts), _direct_values(ppm, texts), atol=1e-5)
    assert layouts == [(80, 80)]
    children = [texts[0] + [4, 5], texts[0] + [6], texts[1] + [7, 8, 9]]
    np.testing.assert_allclose(scorer.score_ids(children), _direct_values(ppm, children), atol=1e-5)
    assert layouts[1] == (16, 96)  # at most 3 new tokens after cached prefixes of up to 70: C + T = 96, not 128
