"""The sampler's one draw per row (`decode.sample_tokens` -> inverse-CDF over blocks): the exact softmax
distribution (chi-square against the probabilities computed in float64), never a token of zero mass, the same
token for the same key; and non-finite logits or values stop the policy and the PPM scorer with an error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.models import PPM, Decoder, init_model
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams, sample_tokens
from rstar_jax.sampling.decode import _BLOCK, _NEG, NONFINITE
from rstar_jax.toy.tiny_model import tiny_model_config

N = 60_000  # rows, one draw each


def _chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    """p-value of Pearson's chi-square of counts against probs, cells with < 5 expected merged into one."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    stat = float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep]))
    dof = int(keep.sum()) - 1
    return float(jax.scipy.special.gammaincc(dof / 2, stat / 2))


def _logits(vocab: int, seed: int) -> np.ndarray:
    """Random logits [V] with masked tokens: a whole block but one token, block edges and the padded tail's edge."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, vocab).astype(np.float32)
    logits[_BLOCK : 2 * _BLOCK] = _NEG
    logits[_BLOCK + 7] = 1.0
    logits[[0, _BLOCK - 1, 2 * _BLOCK, vocab - 1]] = _NEG
    return logits


def _draw(logits: np.ndarray, params: SamplingParams, seed: int = 0) -> np.ndarray:
    keys = jax.random.split(jax.random.key(seed), N)
    return np.asarray(sample_tokens(jnp.asarray(np.tile(logits, (N, 1))), keys, params))


def test_draws_follow_the_softmax_and_never_a_masked_token():
    vocab = 2 * _BLOCK + 100  # three blocks, the last one padded
    logits = _logits(vocab, seed=1)
    for temperature in (1.0, 0.5):
        tokens = _draw(logits, SamplingParams(temperature))
        z = logits.astype(np.float64) / temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        counts = np.bincount(tokens, minlength=vocab)
        assert counts[probs == 0].sum() == 0, "a token of zero probability was drawn"
        assert counts[_BLOCK + 7] > 0
        assert _chi_square_p(counts, probs) > 1e-4


def test_one_token_of_mass_is_always_drawn_and_top_k_keeps_the_support():
    vocab = 3 * _BLOCK
    only = np.full(vocab, _NEG, np.float32)
    only[2 * _BLOCK - 1] = 0.0  # the last token of the middle block
    assert set(_draw(only, SamplingParams(1.0)).tolist()) == {2 * _BLOCK - 1}
    logits = _logits(vocab, seed=2)
    top = np.argsort(-logits)[:5]
    drawn = _draw(logits, SamplingParams(0.7, top_k=5))
    assert set(drawn.tolist()) == set(top.tolist())


def test_same_key_same_token_and_rows_are_independent_of_the_batch():
    logits = jnp.asarray(np.tile(_logits(700, seed=3), (8, 1)))
    keys = jax.random.split(jax.random.key(5), 8)
    full = np.asarray(sample_tokens(logits, keys, SamplingParams(1.0)))
    again = np.asarray(sample_tokens(logits, keys, SamplingParams(1.0)))
    part = np.asarray(sample_tokens(logits[3:5], keys[3:5], SamplingParams(1.0)))
    assert (full == again).all() and (full[3:5] == part).all()


def test_a_row_of_non_finite_logits_gives_the_nonfinite_token_greedy_or_sampled():
    logits = np.tile(_logits(700, seed=4), (4, 1))
    logits[1, 17] = np.nan
    logits[3, 0] = np.inf
    keys = jax.random.split(jax.random.key(6), 4)
    for params in (SamplingParams(0.0), SamplingParams(1.0), SamplingParams(1.0, top_k=3)):
        tokens = np.asarray(sample_tokens(jnp.asarray(logits), keys, params))
        assert tokens[1] == tokens[3] == NONFINITE and (tokens[[0, 2]] >= 0).all()


class _Ids:
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def test_a_model_with_nan_weights_raises_instead_of_sampling_or_scoring():
    config = tiny_model_config(64, hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, max_positions=128)
    policy_model, ppm_model = init_model(Decoder, config, 1), init_model(PPM, config, 1)
    prompts = [[3, 4, 5], [6, 7]]
    policy = FlaxPolicy(policy_model, _Ids(), SamplingParams(1.0), pool_slots=1024, eos_ids=())
    assert [len(r) for r in policy.generate_ids(prompts, 2, 4, seed=[1, 2])] == [2, 2]  # healthy first
    for model in (policy_model, ppm_model):
        model.trunk.embed[...] = model.trunk.embed[...].at[5].set(jnp.nan)  # token 5's embedding
    # (a NaN row can reach the others through masked reads of shared padding slots: 0 x NaN is NaN)
    broken = FlaxPolicy(policy_model, _Ids(), SamplingParams(1.0), pool_slots=1024, eos_ids=())
    with pytest.raises(FloatingPointError, match="NaN or infinite values in [12] of 2 rows"):
        broken.generate_ids(prompts, 1, 4, seed=[1, 2])
    scorer = FlaxPPMScorer(ppm_model, None, pool_slots=1024)
    assert np.isfinite(scorer.score_ids([[6, 7]])).all()
    with pytest.raises(FloatingPointError, match="[12] of 2 values are NaN"):
        scorer.score_ids([[6, 7], [3, 4, 5]])
