"""Decoder and PPM behaviour that does not need transformers as the oracle (except for parameter counts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers_hf import FAMILIES, make_hf_model, ragged_batch

from rstar_jax.models import PPM, Decoder, ModelConfig, abstract_decoder, count_params, last_real_index, load_decoder


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_count_matches_transformers(family, tmp_path):
    torch_model = make_hf_model(family, tmp_path)
    ours = load_decoder(tmp_path)
    assert count_params(ours) == sum(p.numel() for p in torch_model.parameters())
    assert count_params(abstract_decoder(ours.config)) == count_params(ours)


def _tiny_config(**changes) -> ModelConfig:
    base = ModelConfig(
        model_type="qwen2",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        qkv_bias=True,
    )
    return base.replace(**changes)


def test_padding_side_and_batch_mates_do_not_change_a_sequence():
    model = Decoder(_tiny_config(), rngs=nnx.Rngs(0))
    tokens, mask, positions = ragged_batch(3, 7, 64, seed=4, left=True)
    logits, _ = model(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    for b in range(3):
        n = int(mask[b].sum())
        alone, _ = model(jnp.asarray(tokens[b : b + 1, -n:]), jnp.arange(n)[None], jnp.ones((1, n), bool))
        np.testing.assert_allclose(np.asarray(logits)[b, -n:], np.asarray(alone)[0], atol=1e-5)


def test_ppm_scores_the_last_real_token_whatever_the_padding():
    config = _tiny_config()
    ppm = PPM(config, rngs=nnx.Rngs(1))
    left = ragged_batch(4, 6, 64, seed=8, left=True)
    right_tokens = np.zeros_like(left[0])
    right_mask = np.zeros_like(left[1])
    for b in range(4):
        n = int(left[1][b].sum())
        right_tokens[b, :n], right_mask[b, :n] = left[0][b, -n:], True
    right_positions = np.maximum(np.cumsum(right_mask, 1) - 1, 0)
    np.testing.assert_array_equal(np.asarray(last_real_index(jnp.asarray(right_mask))), right_mask.sum(1) - 1)
    assert (np.asarray(last_real_index(jnp.asarray(left[1]))) == 5).all()
    v_left = np.asarray(ppm(jnp.asarray(left[0]), jnp.asarray(left[2]), jnp.asarray(left[1])))
    v_right = np.asarray(ppm(jnp.asarray(right_tokens), jnp.asarray(right_positions), jnp.asarray(right_mask)))
    np.testing.assert_allclose(v_left, v_right, atol=1e-6)
    assert v_left.shape == (4,) and (np.abs(v_left) < 1).all()


def test_layers_are_scanned_so_the_program_does_not_grow_with_depth():
    sizes = []
    for layers in (2, 8):
        config = _tiny_config(num_layers=layers)
        graphdef, state = nnx.split(abstract_decoder(config))
        fwd = lambda s, t, g=graphdef: nnx.merge(g, s)(t, t, t > 0)[0]  # noqa: E731
        tokens = jax.ShapeDtypeStruct((2, 8), jnp.int32)
        sizes.append(len(jax.jit(fwd).lower(state, tokens).as_text()))
    assert abs(sizes[1] - sizes[0]) < 0.05 * sizes[0]


def test_bf16_params_give_fp32_logits_close_to_fp32():
    config = _tiny_config()
    model = Decoder(config, rngs=nnx.Rngs(2))
    graphdef, state = nnx.split(Decoder(config.replace(param_dtype="bfloat16"), rngs=nnx.Rngs(2)))
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.to_pure_dict(nnx.state(model))))
    bf16 = nnx.merge(graphdef, state)
    tokens, mask, positions = map(jnp.asarray, ragged_batch(2, 8, 64, seed=1, left=False))
    out32, _ = model(tokens, positions, mask)
    out16, _ = bf16(tokens, positions, mask)
    assert out16.dtype == jnp.float32 and bf16.trunk.layers.wq[...].dtype == jnp.bfloat16
    assert float(jnp.abs(out16 - out32).max()) < 0.05 * float(jnp.abs(out32).max())
