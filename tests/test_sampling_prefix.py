"""Prefix reuse: the token trie and slot pool, the 4-level tree workload, and PPM scoring over cached prefixes."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers_hf import make_hf_model

from benchmarks.bench_sampling import IdTokenizer, count_unique_tokens, tree_workload
from rstar_jax.interfaces import ValueModel
from rstar_jax.models import PPM, load_decoder
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, PrefixCache, SamplingParams
from rstar_jax.sampling.prefix_cache import SCRATCH_SLOT


def test_plan_reuses_the_longest_prefix_and_always_recomputes_the_last_token():
    cache = PrefixCache(64)
    cached, prefix, writes = cache.plan([5, 6, 7, 8])
    assert (cached, prefix, len(writes), len(set(writes))) == (0, [], 4, 4) and SCRATCH_SLOT not in writes
    cache.release()
    cached, prefix, new = cache.plan([5, 6, 7, 9, 10])
    assert (cached, prefix) == (3, writes[:3]) and len(new) == 2 and not set(new) & set(writes)
    cache.release()
    cached, prefix, again = cache.plan([5, 6, 7, 8])  # fully cached: the last token is run again, in place
    assert (cached, prefix, again) == (3, writes[:3], writes[3:])
    cache.release()
    assert cache.match([5, 6, 7, 9, 10, 11]) == writes[:3] + new
    assert (cache.stats.prompt_tokens, cache.stats.hit_tokens, cache.stats.prefilled_tokens) == (13, 6, 7)


def test_prompts_of_one_batch_never_read_slots_that_batch_has_not_written():
    cache = PrefixCache(64)
    _, _, first = cache.plan([1, 2, 3, 4])
    cached, prefix, second = cache.plan([1, 2, 3, 4, 5])  # same batch: [1..4] are pending, not readable
    assert (cached, prefix, second[:4]) == (0, [], first)
    cache.release()
    assert cache.plan([1, 2, 3, 4, 5, 6])[0] == 5


def test_eviction_frees_least_recently_used_leaves_but_not_the_batch_in_flight():
    cache = PrefixCache(9)  # 8 usable slots
    cache.plan([1, 2, 3])
    cache.release()
    cache.plan([4, 5, 6])
    cache.release()
    cache.plan([1, 2, 3])  # touch [1, 2, 3]: [4, 5, 6] is now the least recently used
    cache.release()
    cache.plan([7, 8, 9, 10])
    assert len(cache.match([4, 5, 6])) == 1 and len(cache.match([1, 2, 3])) == 3  # [6], then [5] went
    assert cache.stats.evicted_tokens == 2 and cache.used_slots == 8
    with pytest.raises(RuntimeError, match="pool size"):
        cache.plan([11, 12, 13, 14, 15])  # [7..10] is pinned by this batch; only 4 slots can be freed
    cache.release()


def test_count_unique_tokens_counts_trie_nodes():
    assert count_unique_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]) == 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2")
    make_hf_model("qwen2", path)
    return load_decoder(path)


def test_tree_of_depth_4_with_8_children_prefills_each_tree_token_about_once(tiny_model):
    policy = FlaxPolicy(tiny_model, IdTokenizer(), SamplingParams(1.0), pool_slots=8192, max_rows=1024, eos_ids=())
    report = tree_workload(policy, list(range(3, 19)), depth=4, children=8, step_tokens=4)
    assert report.prompts_expanded == 1 + 8 + 64 + 512
    assert report.ratio <= 1.2, report
    assert report.reprefill_tokens >= 3 * report.unique_tokens  # what the reference's re-prefill would cost
    assert report.hit_rate > 0.6 and report.pool_slots_used == report.unique_tokens


@pytest.fixture(scope="module")
def ppm(tiny_model):
    return PPM.from_policy(tiny_model, nnx.Rngs(3))


def _direct_values(ppm, seqs):
    """PPM.__call__ on right-padded full sequences (no cache)."""
    width = max(map(len, seqs))
    tokens = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros((len(seqs), width), bool)
    for b, s in enumerate(seqs):
        tokens[b, : len(s)], mask[b, : len(s)] = s, True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return np.asarray(ppm(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask)))


class _TextIds(IdTokenizer):
    """Texts of space-separated ids (`"7 30 41"`), so the scorer can be called with texts as the search does."""

    def __call__(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[int(t) for t in text.split()] for text in texts]}


def test_ppm_scores_match_the_full_forward_with_and_without_cached_prefixes(ppm):
    scorer = FlaxPPMScorer(ppm, _TextIds(), pool_slots=1024)
    prefix = [7, 30, 41, 12, 9, 66, 5]
    first = [prefix, prefix + [11, 12], [50, 51]]
    value_model: ValueModel = scorer  # the search's only entry point: score(texts) -> float32 [B]
    values = value_model.score(texts=[" ".join(map(str, ids)) for ids in first])
    assert values.dtype == np.float32 and values.shape == (3,)
    np.testing.assert_allclose(values, _direct_values(ppm, first), atol=1e-5)
    children = [prefix + [11, 12] + step for step in ([3], [4, 4, 4], [90, 1, 2, 3, 4])] + [[50, 51, 52]]
    hits = scorer.cache.stats.hit_tokens
    values = scorer.score_ids(children)
    assert scorer.cache.stats.hit_tokens - hits == 3 * 9 + 2
    np.testing.assert_allclose(values, _direct_values(ppm, children), atol=1e-5)
    assert values.dtype == np.float32 and np.all(np.abs(values) < 1) and np.ptp(values) > 0
