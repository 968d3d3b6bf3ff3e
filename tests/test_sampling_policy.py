"""FlaxPolicy: greedy parity with transformers' generate, seeds, top-k/top-p, steps with stop strings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers_hf import TINY_VOCAB, make_hf_model, ragged_batch
from test_sampling_helpers import byte_bpe_tokenizer

from rstar_jax.interfaces import FinishReason, Policy, Step
from rstar_jax.models import PPM, MeshConfig, init_model, load_decoder, make_mesh
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams, kv_pool, sample_tokens

NEW = 64


class _NoTokenizer:
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    """family -> (transformers model, our greedy policy with EOS disabled, our decoder)."""
    out = {}
    for family in ("qwen2", "llama"):
        path = tmp_path_factory.mktemp(family)
        hf = make_hf_model(family, path)
        hf.generation_config.eos_token_id = None
        model = load_decoder(path)
        out[family] = (hf, FlaxPolicy(model, _NoTokenizer(), SamplingParams(0.0), pool_slots=2048, eos_ids=()), model)
    return out


def _hf_greedy(hf, prompts, new):
    """transformers' greedy generate on left-padded prompts (lists of ids) -> [B, new] ids."""
    width = max(map(len, prompts))
    tokens = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for b, p in enumerate(prompts):
        tokens[b, width - len(p) :], mask[b, width - len(p) :] = p, 1
    with torch.no_grad():
        out = hf.generate(
            input_ids=torch.from_numpy(tokens),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
    return out[:, width:].numpy()


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_greedy_token_identical_to_transformers_then_again_over_cached_prefixes(hf_pair, family):
    hf, policy, _ = hf_pair[family]
    tokens, mask, _ = ragged_batch(4, 11, TINY_VOCAB, seed=3, left=True)
    prompts = [t[m].tolist() for t, m in zip(tokens, mask, strict=True)]
    ours = policy.generate_ids(prompts, 1, NEW, seed=[0, 1, 2, 3])
    np.testing.assert_array_equal(np.array([r[0] for r in ours]), _hf_greedy(hf, prompts, NEW))
    # children: prompt + its first 20 generated tokens; the parent prefix now comes from the prefix cache
    hits = policy.cache.stats.hit_tokens
    children = [p + r[0][:20] for p, r in zip(prompts, ours, strict=True)]
    again = policy.generate_ids(children, 1, 16, seed=[0, 1, 2, 3])
    assert policy.cache.stats.hit_tokens - hits == sum(map(len, prompts))
    np.testing.assert_array_equal(np.array([r[0] for r in again]), _hf_greedy(hf, children, 16))


def test_sampling_reproducible_and_seed_per_prompt_independent_of_batch(hf_pair):
    model = hf_pair["qwen2"][2]
    sampling = SamplingParams(temperature=1.0)
    policy = FlaxPolicy(model, _NoTokenizer(), sampling, pool_slots=4096, eos_ids=())
    prompt = [5, 17, 33, 8, 61, 12, 9]
    alone = policy.generate_ids([prompt], 4, 24, seed=[1234])[0]
    assert len({tuple(s) for s in alone}) == 4, "the n samples of one prompt must differ"
    others = [[7, 7, 40], list(range(10, 30)), [3, 4]]
    batch = policy.generate_ids([others[0], prompt, others[1], others[2]], 4, 24, seed=[9, 1234, 11, 12])
    assert batch[1] == alone
    fresh = FlaxPolicy(model, _NoTokenizer(), sampling, pool_slots=4096, eos_ids=())
    assert fresh.generate_ids([prompt], 4, 24, seed=[1234])[0] == alone
    assert fresh.generate_ids([prompt], 4, 24, seed=[1235])[0] != alone


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_samples_sharing_their_prompts_cache_decode_as_a_prompt_decoded_alone(hf_pair, family):
    """n > 1 reads each prompt's cache once for its n rows (`models.Prefix`); n = 1 keeps it in the row. Greedy,
    every one of the n shared rows equals transformers' greedy; sampled, row (p, 0) draws with the same key as the
    prompt decoded alone (n = 1), so the two must match token for token, over cached prefixes too."""
    hf, greedy_policy, model = hf_pair[family]
    tokens, mask, _ = ragged_batch(5, 13, TINY_VOCAB, seed=8, left=True)
    prompts = [t[m].tolist() for t, m in zip(tokens, mask, strict=True)]
    shared = greedy_policy.generate_ids(prompts, 3, NEW, seed=[0] * 5)
    want = _hf_greedy(hf, prompts, NEW)
    for j in range(3):
        np.testing.assert_array_equal(np.array([r[j] for r in shared]), want)
    sampled = FlaxPolicy(model, _NoTokenizer(), SamplingParams(1.0), pool_slots=4096, eos_ids=())
    seeds = [21, 22, 23, 24, 25]
    four = sampled.generate_ids(prompts, 4, 24, seed=seeds)
    alone = FlaxPolicy(model, _NoTokenizer(), SamplingParams(1.0), pool_slots=4096, eos_ids=())
    assert [r[0] for r in alone.generate_ids(prompts, 1, 24, seed=seeds)] == [r[0] for r in four]
    children = [p + r[1][:6] for p, r in zip(prompts, four, strict=True)]  # their parents' prefixes are cached
    again = sampled.generate_ids(children, 4, 24, seed=seeds)
    assert [r[0] for r in alone.generate_ids(children, 1, 24, seed=seeds)] == [r[0] for r in again]


def test_top_k_one_is_greedy_through_the_engine(hf_pair):
    _, greedy_policy, model = hf_pair["llama"]
    prompts = [[4, 9, 22, 31], [50, 3]]
    greedy = greedy_policy.generate_ids(prompts, 1, 20, seed=[0, 0])
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(1.5, top_k=1, top_p=0.5), pool_slots=1024, eos_ids=())
    got = policy.generate_ids(prompts, 2, 20, seed=[5, 6])
    assert [r[0] for r in got] == [r[0] for r in greedy] and [r[1] for r in got] == [r[0] for r in greedy]


def test_top_k_and_top_p_restrict_the_support():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.1, 0.06, 0.04]] * 2000, jnp.float32))  # [R, V]
    keys = jax.random.split(jax.random.key(0), 2000)
    top2 = np.asarray(sample_tokens(logits, keys, SamplingParams(1.0, top_k=2)))
    assert set(top2.tolist()) == {0, 1}
    nucleus = np.asarray(sample_tokens(logits, keys, SamplingParams(1.0, top_p=0.85)))
    assert set(nucleus.tolist()) == {0, 1, 2}  # 0.5 + 0.3 < 0.85 <= 0.5 + 0.3 + 0.1
    free = np.asarray(sample_tokens(logits, keys, SamplingParams(1.0)))
    assert set(free.tolist()) == {0, 1, 2, 3, 4}
    assert abs(np.mean(free == 0) - 0.5) < 0.05
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(1.0, top_p=0.0)


@pytest.fixture(scope="module")
def text_policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("text")
    tok = byte_bpe_tokenizer(path)
    make_hf_model("qwen2", path, vocab_size=len(tok))
    return FlaxPolicy(load_decoder(path), tok, SamplingParams(temperature=1.0), pool_slots=8192)


def test_generate_steps_with_stop_strings_shares_the_prompt_prefill(text_policy):
    policy, tok = text_policy, text_policy.tokenizer
    prompts = ["let's think step by step", "x = 12 * 7\nprint(x)<end_of_step>"]
    stops = ["e", " t"]
    before = policy.cache.stats.prefilled_tokens
    as_policy: Policy = policy  # called by the Protocol's parameter names, as the search calls it
    steps = as_policy.generate(prompts=prompts, n=6, stop=stops, max_tokens=40, seed=[3, 4])
    assert policy.cache.stats.prefilled_tokens - before == sum(len(tok(p)["input_ids"]) for p in prompts)
    assert [len(s) for s in steps] == [6, 6]
    finishes = {s.finish for row in steps for s in row}
    assert FinishReason.STOP in finishes
    for row in steps:
        for s in row:
            assert 1 <= s.num_tokens <= 40
            if s.finish is FinishReason.STOP:
                body = s.text[: -len(s.stop)]
                assert s.stop in stops and s.text.endswith(s.stop)
                assert not any(t in body for t in stops), "the step must end at the FIRST stop string"
            else:
                assert not any(t in s.text for t in stops)
    assert steps == policy.generate(prompts, n=6, stop=stops, max_tokens=40, seed=[3, 4])
    # children re-tokenize prompt + step text; their parent's tokens come back from the prefix cache
    children = [p + s.text for p, row in zip(prompts, steps, strict=True) for s in row]
    hits, parents = policy.cache.stats.hit_tokens, sum(6 * len(tok(p)["input_ids"]) for p in prompts)
    policy.generate(children, n=2, stop=stops, max_tokens=8, seed=list(range(12)))
    assert policy.cache.stats.hit_tokens - hits >= parents - 12  # at most one boundary token lost per child


def test_small_pool_evicts_and_stays_correct(hf_pair):
    hf, _, model = hf_pair["qwen2"]
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(0.0), pool_slots=40, eos_ids=())
    prompts = [list(range(3 + i, 23 + i)) for i in range(3)]  # 60 tokens > 39 usable slots over 3 calls
    for p in prompts:
        assert policy.generate_ids([p], 1, 8, seed=[0])[0][0] == _hf_greedy(hf, [p], 8)[0].tolist()
    assert policy.cache.stats.evicted_tokens > 0 and policy.cache.used_slots <= 39
    with pytest.raises(RuntimeError, match="pool size"):
        policy.generate_ids([list(range(3, 50))], 1, 4, seed=[0])


def test_eos_and_single_token_steps(hf_pair):
    _, greedy_policy, model = hf_pair["llama"]
    prompts = [[4, 9, 22, 31], [50, 3]]  # the shapes of test_top_k_one_is_greedy_through_the_engine
    tokens = greedy_policy.generate_ids(prompts, 1, 20, seed=[0, 0])[0][0]
    eos = tokens[10]
    policy = FlaxPolicy(model, _NoTokenizer(), SamplingParams(0.0), pool_slots=1024, eos_ids=(eos,))
    row = policy.decode_ids(prompts, 1, (), 20, seed=[0, 0])[0][0]
    assert row.step.finish is FinishReason.EOS and row.step.num_tokens == tokens.index(eos) + 1
    assert row.tokens == tokens[: tokens.index(eos)]
    one = policy.decode_ids(prompts, 1, (), 1, seed=[0, 0])[0][0]
    assert (one.step.finish, one.step.num_tokens, one.tokens) == (FinishReason.LENGTH, 1, tokens[:1])


def test_sharded_model_on_a_mesh_gives_the_same_greedy_tokens(hf_pair, tmp_path):
    hf, greedy_policy, _ = hf_pair["qwen2"]
    hf.save_pretrained(str(tmp_path))
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = load_decoder(tmp_path, mesh=mesh)
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13], [20, 21, 22, 23, 24]]
    expected = greedy_policy.generate_ids(prompts, 2, 20, seed=[0, 1, 2, 3])
    with jax.set_mesh(mesh):
        policy = FlaxPolicy(sharded, _NoTokenizer(), SamplingParams(0.0), pool_slots=512, eos_ids=())
        assert policy.generate_ids(prompts, 2, 20, seed=[0, 1, 2, 3]) == expected
        assert len(policy.pool.k.sharding.device_set) == 8


def test_a_prompt_without_room_for_max_tokens_ends_there_and_the_others_still_run(text_policy):
    policy, tok = text_policy, text_policy.tokenizer
    limit = policy.config.max_position_embeddings
    short = "x = 1"
    long = "a" * (4 * limit)
    assert len(tok(long)["input_ids"]) + 8 > limit
    steps = policy.generate([short, long, short], n=3, stop=["e"], max_tokens=8, seed=[1, 2, 1])
    assert steps[1] == [Step("", FinishReason.LENGTH, None, 0)] * 3
    assert steps[0] == steps[2] == policy.generate([short], n=3, stop=["e"], max_tokens=8, seed=[1])[0]
    with pytest.raises(ValueError, match="must fit"):  # the token-level API still refuses it
        policy.generate_ids([tok(long)["input_ids"]], 1, 8, seed=[0])


def test_row_buckets_round_up_to_the_meshs_batch_shards(hf_pair, tmp_path):
    """3 prompts would bucket to 3 rows, which a (data=2, fsdp=2) mesh cannot split: rows round up to 4, the
    padding rows are dropped, and the tokens match the unsharded policy; likewise the PPM scorer's rows."""
    hf, greedy_policy, _ = hf_pair["qwen2"]
    hf.save_pretrained(str(tmp_path))
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = load_decoder(tmp_path, mesh=mesh)
    ppm = init_model(PPM, sharded.config, 0, mesh=mesh)
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    expected = greedy_policy.generate_ids(prompts, 1, 20, seed=[0, 1, 2])
    assert kv_pool.row_multiple() == 1
    with jax.set_mesh(mesh):
        assert kv_pool.row_multiple() == 4
        policy = FlaxPolicy(sharded, _NoTokenizer(), SamplingParams(0.0), pool_slots=512, eos_ids=())
        assert policy.generate_ids(prompts, 1, 20, seed=[0, 1, 2]) == expected
        scorer = FlaxPPMScorer(ppm, None, pool_slots=512)
        values = [scorer.score_ids(prompts[:1]), scorer.score_ids(prompts)]  # 1 row would not split either
    unsharded = FlaxPPMScorer(init_model(PPM, sharded.config, 0), None, pool_slots=512)
    np.testing.assert_allclose(values[0], unsharded.score_ids(prompts[:1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[1], unsharded.score_ids(prompts), rtol=1e-5, atol=1e-6)
