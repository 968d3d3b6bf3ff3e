"""Logits parity with transformers' PyTorch implementation on tiny random Qwen2, Llama and Phi-3 models."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from helpers_hf import FAMILIES, TINY_VOCAB, make_hf_model, ragged_batch, torch_logits

from rstar_jax.models import Decoder, KVCache, build_from_arrays, load_decoder, read_safetensors, save_decoder

TOL = 1e-4


def _ours(model, tokens, mask, positions):
    logits, _ = model(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    return np.asarray(logits)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """family -> (torch model, directory); qwen2 is saved sharded (index file) to exercise that path."""
    out = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(family)
        shard = "20KB" if family == "qwen2" else None
        out[family] = (make_hf_model(family, path, max_shard_size=shard), path)
    return out


@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_on_ragged_batch(hf_models, family, left):
    torch_model, path = hf_models[family]
    if family == "qwen2":
        assert (path / "model.safetensors.index.json").is_file()
    tokens, mask, positions = ragged_batch(4, 11, TINY_VOCAB, seed=3, left=left)
    diff = np.abs(
        _ours(load_decoder(path), tokens, mask, positions) - torch_logits(torch_model, tokens, mask, positions)
    )
    assert diff[mask].max() < TOL


def test_phi3_longrope_partial_rotary_and_sliding_window(tmp_path):
    """Positions past original_max_positions switch LongRoPE to its long factors; window 5 masks far keys."""
    rope = {"rope_type": "longrope", "short_factor": [1.0, 1.3], "long_factor": [2.0, 3.5], "rope_theta": 500.0}
    torch_model = make_hf_model(
        "phi3",
        tmp_path,
        original_max_position_embeddings=8,
        rope_parameters=rope | {"partial_rotary_factor": 0.5},
        partial_rotary_factor=0.5,
        sliding_window=5,
    )
    model = load_decoder(tmp_path)
    assert model.config.rope_scaling is not None and model.config.rotary_dim == 4 and model.config.sliding_window == 5
    for length in (6, 14):  # below and above original_max_positions
        tokens, mask, positions = ragged_batch(3, length, TINY_VOCAB, seed=length, left=False)
        diff = np.abs(_ours(model, tokens, mask, positions) - torch_logits(torch_model, tokens, mask, positions))
        assert diff[mask].max() < TOL
    unwindowed = build_from_arrays(
        Decoder, model.config.replace(sliding_window=None), nnx.to_pure_dict(nnx.state(model))
    )
    assert np.abs(_ours(unwindowed, tokens, mask, positions) - _ours(model, tokens, mask, positions)).max() > 1e-3


@pytest.mark.parametrize("family", ["qwen2", "phi3"])
def test_kv_cache_prefill_then_decode_equals_full_forward(hf_models, family):
    """Left-padded prompts: prefill 7 tokens into a 12-slot cache, decode 4 one at a time."""
    model = load_decoder(hf_models[family][1])
    tokens, mask, positions = ragged_batch(3, 11, TINY_VOCAB, seed=5, left=True)
    full = _ours(model, tokens, mask, positions)
    cache = KVCache.init(model.config, batch=3, length=12)
    logits, cache = model(jnp.asarray(tokens[:, :7]), jnp.asarray(positions[:, :7]), jnp.asarray(mask[:, :7]), cache)
    steps = [np.asarray(logits)]
    for t in range(7, 11):
        sl = slice(t, t + 1)
        logits, cache = model(
            jnp.asarray(tokens[:, sl]), jnp.asarray(positions[:, sl]), jnp.asarray(mask[:, sl]), cache
        )
        steps.append(np.asarray(logits))
    assert int(cache.index) == 11
    incremental = np.concatenate(steps, axis=1)
    assert np.abs(incremental - full)[mask].max() < 1e-5


def test_bf16_checkpoint_loads_as_bf16_and_tracks_fp32(tmp_path):
    torch_model = make_hf_model("llama", tmp_path / "fp32")
    torch_model.to(dtype=torch.bfloat16).save_pretrained(str(tmp_path))
    model = load_decoder(tmp_path)
    assert model.config.param_dtype == "bfloat16" and model.trunk.embed[...].dtype == jnp.bfloat16
    tokens, mask, positions = ragged_batch(2, 8, TINY_VOCAB, seed=9, left=True)
    ours32 = _ours(load_decoder(tmp_path, dtype="float32"), tokens, mask, positions)
    diff = np.abs(_ours(model, tokens, mask, positions) - ours32)
    assert diff[mask].max() < 0.1 * np.abs(ours32[mask]).max()
    save_decoder(model, tmp_path / "out")  # bf16 round trip is bit-exact too
    original, exported = read_safetensors(tmp_path)[0], read_safetensors(tmp_path / "out")[0]
    assert sorted(original) == sorted(exported)
    assert all(exported[k].dtype == v.dtype and exported[k].tobytes() == v.tobytes() for k, v in original.items())


def test_llama3_rope_scaling(tmp_path):
    """Llama 3.1 rope: with theta 5e5 and original length 16, one frequency is smoothed, the rest divided."""
    rope = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
        "rope_theta": 500000.0,
    }
    torch_model = make_hf_model("llama", tmp_path, rope_parameters=rope)
    model = load_decoder(tmp_path)
    assert model.config.rope_scaling is not None
    tokens, mask, positions = ragged_batch(3, 12, TINY_VOCAB, seed=12, left=True)
    diff = np.abs(_ours(model, tokens, mask, positions) - torch_logits(torch_model, tokens, mask, positions))
    assert diff[mask].max() < TOL
    assert type(model.config).from_hf_dict(model.config.to_hf_dict()) == model.config
    plain = build_from_arrays(Decoder, model.config.replace(rope_scaling=None), nnx.to_pure_dict(nnx.state(model)))
    assert np.abs(_ours(plain, tokens, mask, positions) - _ours(model, tokens, mask, positions)).max() > 1e-3
