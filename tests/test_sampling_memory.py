"""Peak memory of the sampling engine is bounded by the configuration, whatever the number of texts (issue 14).

`make demo` died scoring a round's evaluation trajectories: the PPM prefilled up to 256 texts of 1,024 padded
tokens in one call (attention scores of about 14-28 GB). Here many long texts go through a tiny random policy
and PPM with a small `prefill_tokens`, every compiled program's memory (XLA's analysis) is checked against
`kv_pool.prefill_bytes_bound`, and the program the old one-call-per-`max_rows` layout compiles is shown to
exceed it.
"""

import numpy as np
import pytest
from helpers_memory import MemoryProbe, analyse

from rstar_jax.models import PPM, Decoder, init_model
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams, kv_pool
from rstar_jax.sampling import policy as policy_module
from rstar_jax.sampling import scorer as scorer_module
from rstar_jax.sampling.prefix_cache import PrefixCache
from rstar_jax.toy.tiny_model import tiny_model_config

VOCAB = 128
BUDGET = 2048  # prefill_tokens of this test: two 1,024-token rows per call
MAX_ROWS = 256
CONFIG = tiny_model_config(VOCAB, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, max_positions=1024)


class _Ids:
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def _texts(count: int, seed: int) -> list[list[int]]:
    """`count` texts of 300-700 tokens; every other one extends an earlier text (a cached prefix, C > 0)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for i in range(count):
        if i % 2 and out:
            base = out[int(rng.integers(len(out)))]
            cut = int(rng.integers(200, min(len(base), 500)))
            out.append(base[:cut] + rng.integers(2, VOCAB, int(rng.integers(100, 200))).tolist())
        else:
            out.append(rng.integers(2, VOCAB, int(rng.integers(300, 700))).tolist())
    return out


def test_prefill_groups_keep_order_respect_the_budget_and_put_a_long_sequence_alone():
    seqs = [[1] * n for n in (100, 120, 30, 900, 60, 60, 60, 60, 60, 2000, 10, 10)]
    groups = kv_pool.prefill_groups(seqs, 512, max_rows=3)
    assert groups[0][0] == 0 and groups[-1][1] == len(seqs)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(groups, groups[1:], strict=False))
    for lo, hi in groups:
        longest = max(len(s) for s in seqs[lo:hi])
        assert hi - lo <= 3
        assert hi - lo == 1 or kv_pool.bucket_rows(hi - lo) * kv_pool.bucket(longest) <= 512
    assert (3, 4) in groups and (9, 10) in groups  # 900 and 2000 tokens: over the budget, each alone
    assert groups == [(0, 3), (3, 4), (4, 7), (7, 9), (9, 10), (10, 12)]
    # Inputs that already fit in max_rows-sized calls keep exactly those calls (outputs unchanged).
    short = [[1] * 20] * 10
    assert kv_pool.prefill_groups(short, 16384, max_rows=4) == [(0, 4), (4, 8), (8, 10)]
    # The scorer buckets rows at powers of two: 3 rows of 128 count as 4 x 128.
    assert kv_pool.prefill_groups([[1] * 100] * 3, 384, 8, rows=lambda n: kv_pool.bucket(n, 1)) == [(0, 2), (2, 3)]
    assert kv_pool.prefill_groups([], 512, 4) == []
    with pytest.raises(ValueError, match="prefill_tokens"):
        kv_pool.prefill_groups(seqs, 0, 4)


def test_scorer_calls_stay_within_the_budget_for_many_long_texts(monkeypatch):
    probe = MemoryProbe.install(monkeypatch)
    ppm = init_model(PPM, CONFIG, 0)
    scorer = FlaxPPMScorer(ppm, None, pool_slots=65536, max_rows=MAX_ROWS, prefill_tokens=BUDGET)
    texts = _texts(40, seed=0)
    values = scorer.score_ids(texts)
    assert values.shape == (40,) and np.isfinite(values).all()
    bound = kv_pool.prefill_bytes_bound(CONFIG, BUDGET, max(map(len, texts)))
    calls = probe.calls["score"]
    assert calls
    for c in calls:
        assert c.used <= bound, (c, bound)
        assert c.tokens <= BUDGET and c.width <= 2 * 1024
    assert any(c.width > c.tokens // c.rows for c in calls)  # some calls read cached prefixes (C > 0)
    # Values do not depend on how the texts were grouped: one text at a time gives the same values.
    alone = FlaxPPMScorer(ppm, None, pool_slots=65536, max_rows=1, prefill_tokens=BUDGET)
    np.testing.assert_allclose(np.concatenate([alone.score_ids([t]) for t in texts]), values, atol=2e-5)

    # The old layout: all 40 texts (< max_rows) in one call of 64 rows x 1,024 tokens.
    old = FlaxPPMScorer(ppm, None, pool_slots=65536, max_rows=MAX_ROWS, prefill_tokens=1 << 30)
    batch = kv_pool.plan_prefill(PrefixCache(65536), texts, kv_pool.bucket(len(texts)))
    big = analyse(scorer_module._SCORE.jitted, "score", (old._graphdef, old._state, old.pool, batch), {})
    assert big.used > 4 * bound, (big, bound)
    used = max(c.used for c in calls)
    print(f"score: new max {used / 1e6:.0f} MB, bound {bound / 1e6:.0f} MB, old {big.used / 1e6:.0f} MB")


def test_policy_prefill_and_decode_stay_within_the_budget_for_many_long_prompts(monkeypatch):
    probe = MemoryProbe.install(monkeypatch)
    model = init_model(Decoder, CONFIG, 1)
    n, max_tokens = 4, 8
    policy = FlaxPolicy(
        model, _Ids(), SamplingParams(1.0), pool_slots=65536, max_rows=MAX_ROWS, prefill_tokens=BUDGET, eos_ids=()
    )
    prompts = _texts(24, seed=1)
    out = policy.generate_ids(prompts, n, max_tokens, seed=list(range(len(prompts))))
    assert [len(r) for r in out] == [n] * len(prompts) and all(len(s) == max_tokens for r in out for s in r)
    k, decode_slots = policy.decode_shape(max_tokens)
    rows = kv_pool.bucket_rows(MAX_ROWS // n) * n
    bound = kv_pool.prefill_bytes_bound(
        CONFIG, BUDGET, max(map(len, prompts)), samples=n, decode_rows=rows, decode_slots=decode_slots
    )
    for c in probe.calls["prefill"]:
        assert c.tokens <= BUDGET and c.used <= bound, (c, bound)
    chunk_bound = kv_pool.decode_bytes_bound(CONFIG, BUDGET, max(map(len, prompts)), n, rows, decode_slots)
    assert probe.calls["chunk"]
    for c in probe.calls["chunk"]:
        assert c.used <= chunk_bound, (c, chunk_bound)

    # The old layout: max_rows // n = 64 prompts per call, all 24 in one prefill of 24 x 1,024 tokens.
    batch = kv_pool.plan_prefill(PrefixCache(65536), prompts, kv_pool.bucket_rows(len(prompts)))
    seeds = np.zeros((batch.lengths.shape[0],), np.uint32)
    static = dict(n=n, decode_slots=2 * k, params=policy.sampling)
    args = (policy._graphdef, policy._state, policy.pool, batch, seeds)
    big = analyse(policy_module._PREFILL.jitted, "prefill", args, static)
    assert big.used > 4 * bound, (big, bound)
    used = max(c.used for c in probe.calls["prefill"])
    print(f"policy prefill: new max {used / 1e6:.0f} MB, bound {bound / 1e6:.0f} MB, old {big.used / 1e6:.0f} MB")


class _SplitTokenizer:
    """Text '1 2 3' -> ids [1, 2, 3]."""

    def __call__(self, texts):
        return {"input_ids": [[int(t) for t in text.split()] for text in texts]}


def test_score_cuts_a_text_over_the_context_to_its_head():
    scorer = FlaxPPMScorer(init_model(PPM, CONFIG, 0), _SplitTokenizer(), pool_slots=8192, prefill_tokens=BUDGET)
    texts = _texts(3, seed=2)
    texts[1] = texts[1] + texts[0] + texts[2]  # longer than max_position_embeddings = 1,024
    assert len(texts[1]) > CONFIG.max_position_embeddings
    with pytest.raises(ValueError, match="max_position_embeddings"):
        scorer.score_ids(texts)
    values = scorer.score([" ".join(map(str, t)) for t in texts])
    head = [t[: CONFIG.max_position_embeddings] for t in texts]
    np.testing.assert_allclose(values, scorer.score_ids(head), atol=2e-5)
