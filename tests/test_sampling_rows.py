"""FlaxPolicy's decode batch shrinks as rows finish and grows its decode slots for long rows: same tokens."""

import pytest
from helpers_hf import hf_and_decoder
from test_sampling_policy import _hf_greedy, _NoTokenizer

from rstar_jax.sampling import FlaxPolicy, SamplingParams, kv_pool
from rstar_jax.sampling import policy as policy_module

PROMPTS = [[3 + i, 17, 40 + 2 * i, 9, 11 + i][: 2 + i % 4] for i in range(11)]
NEW = 70  # 5 chunks of 16 after the prefill's token: decode slots grow 32 -> 64 -> 128


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return hf_and_decoder("qwen2", tmp_path_factory.mktemp("qwen2"))


@pytest.fixture
def shrink_to_one_row(monkeypatch):
    monkeypatch.setattr(policy_module, "MIN_ROWS", 1)


def _cut(tokens, eos):
    """tokens up to (excluding) the first EOS."""
    return next((tokens[:i] for i, t in enumerate(tokens) if t in eos), tokens)


def test_bucket_rows_steps_by_powers_of_two_and_one_and_a_half_times_them():
    got = [kv_pool.bucket_rows(n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 13, 17, 25, 90, 97, 129)]
    assert got == [1, 2, 3, 4, 6, 6, 8, 12, 16, 24, 32, 96, 128, 192]
    assert kv_pool.bucket_rows(3, minimum=8) == 8 and kv_pool.bucket_rows(9, minimum=8) == 12
    assert [kv_pool.bucket_rows(n, multiple=4) for n in (1, 3, 5, 9, 13)] == [4, 4, 8, 12, 16]


def test_greedy_rows_ending_at_different_times_match_transformers(qwen2, shrink_to_one_row):
    hf, model = qwen2
    full = _hf_greedy(hf, PROMPTS, NEW).tolist()  # this random model repeats one token per prompt
    eos = {full[0][0], full[1][0], full[2][0]}  # most rows end at once, the others run to NEW tokens
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(0.0), pool_slots=2048, eos_ids=tuple(eos))
    got = policy.generate_ids(PROMPTS, 1, NEW, seed=list(range(len(PROMPTS))))
    expected = [_cut(row, eos) for row in full]
    assert 0 < sum(len(e) == NEW for e in expected) < len(PROMPTS) / 2  # the batch shrinks, then slots grow
    assert [r[0] for r in got] == expected


def test_sampled_rows_do_not_depend_on_the_rows_beside_them(qwen2, shrink_to_one_row):
    _, model = qwen2
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(1.0), pool_slots=4096, eos_ids=(5, 7, 11, 13))
    seeds = [100 + i for i in range(len(PROMPTS))]
    batch = policy.generate_ids(PROMPTS, 4, NEW, seed=seeds)
    lengths = {len(s) for r in batch for s in r}
    assert len(lengths) > 3, lengths
    alone = [policy.generate_ids([p], 4, NEW, seed=[s])[0] for p, s in zip(PROMPTS[:4], seeds, strict=False)]
    assert batch[:4] == alone and max(lengths) <= NEW
