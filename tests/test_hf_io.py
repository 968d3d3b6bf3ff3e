"""HF directory I/O: bit-exact round trips, exports that transformers loads silently, the PPM export, bad input."""

import json
import logging
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers_hf import FAMILIES, TINY_VOCAB, make_hf_model, ragged_batch, torch_logits, write_bpe_tokenizer
from safetensors.numpy import save_file

from rstar_jax.models import (
    PPM,
    ConfigError,
    WeightsError,
    load_decoder,
    load_ppm,
    read_safetensors,
    save_decoder,
    save_ppm,
)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _load_silently(loader, path):
    """Load with transformers, returning (model, warnings and warning-level log messages)."""
    handler = _Collect()
    logger = transformers.utils.logging.get_logger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = loader.from_pretrained(str(path)).eval()
    finally:
        logger.removeHandler(handler)
    return model, [str(w.message) for w in caught] + handler.messages


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_bit_exact_and_transformers_loads_it_silently(family, tmp_path):
    torch_model = make_hf_model(family, tmp_path / "hf", max_shard_size="30KB")
    save_decoder(load_decoder(tmp_path / "hf"), tmp_path / "out", max_shard_bytes=30_000)
    original, _ = read_safetensors(tmp_path / "hf")
    exported, _ = read_safetensors(tmp_path / "out")
    assert sorted(original) == sorted(exported)
    for key, value in original.items():
        assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
        assert exported[key].tobytes() == value.tobytes(), key
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    reloaded, messages = _load_silently(transformers.AutoModelForCausalLM, tmp_path / "out")
    assert messages == []
    assert type(reloaded) is type(torch_model)
    tokens, mask, positions = ragged_batch(3, 7, TINY_VOCAB, seed=0, left=True)
    np.testing.assert_array_equal(
        torch_logits(reloaded, tokens, mask, positions), torch_logits(torch_model, tokens, mask, positions)
    )


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_ppm_export_is_a_sequence_classifier_with_our_scores(family, tmp_path):
    make_hf_model(family, tmp_path / "policy")
    policy = load_decoder(tmp_path / "policy")
    ppm = PPM.from_policy(policy, nnx.Rngs(7))
    np.testing.assert_array_equal(np.asarray(ppm.trunk.embed[...]), np.asarray(policy.trunk.embed[...]))
    save_ppm(ppm, tmp_path / "ppm")
    config = json.loads((tmp_path / "ppm" / "config.json").read_text())
    assert config["rstar_value_head"]["transform"] == "tanh" and config["num_labels"] == 1
    hf_ppm, messages = _load_silently(transformers.AutoModelForSequenceClassification, tmp_path / "ppm")
    assert messages == []
    tokens, mask, positions = ragged_batch(4, 9, TINY_VOCAB, seed=2, left=False)  # pad id 0 never a real token
    with torch.no_grad():
        hf_scores = (
            hf_ppm(
                input_ids=torch.from_numpy(tokens.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)),
            )
            .logits[:, 0]
            .numpy()
        )
    args = (jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    raw = np.asarray(ppm.raw_scores(*args))
    assert np.abs(raw - hf_scores).max() < 1e-4
    np.testing.assert_allclose(np.asarray(ppm(*args)), np.tanh(raw), rtol=1e-6)
    restored = load_ppm(tmp_path / "ppm")
    np.testing.assert_array_equal(np.asarray(restored(*args)), np.asarray(ppm(*args)))
    with pytest.raises(ConfigError, match="not a PPM export"):
        load_ppm(tmp_path / "policy")


@pytest.fixture
def qwen_dir(tmp_path):
    make_hf_model("qwen2", tmp_path / "m")
    return tmp_path / "m"


def test_missing_config_json_names_the_file(qwen_dir):
    (qwen_dir / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"m/config\.json: missing"):
        load_decoder(qwen_dir)


def test_unsupported_architecture_names_the_file(qwen_dir):
    config = json.loads((qwen_dir / "config.json").read_text())
    (qwen_dir / "config.json").write_text(json.dumps(config | {"model_type": "mistral"}))
    with pytest.raises(ConfigError, match=r"config\.json: model_type 'mistral'.*supported model_type values"):
        load_decoder(qwen_dir)


def test_shape_mismatch_names_file_key_and_shapes(qwen_dir):
    config = json.loads((qwen_dir / "config.json").read_text())
    (qwen_dir / "config.json").write_text(json.dumps(config | {"intermediate_size": 40}))
    with pytest.raises(
        WeightsError,
        match=r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' "
        r"has shape \(\d+, \d+\) but .*config\.json implies \(\d+, \d+\)",
    ):
        load_decoder(qwen_dir)


def test_missing_tensor_and_missing_shard_are_named(qwen_dir, tmp_path):
    tensors, _ = read_safetensors(qwen_dir)
    del tensors["model.norm.weight"]
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(qwen_dir / "model.safetensors"))
    with pytest.raises(WeightsError, match="tensor 'model.norm.weight' is missing"):
        load_decoder(qwen_dir)
    make_hf_model("llama", tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    (tmp_path / "sharded" / shard).unlink()
    with pytest.raises(WeightsError, match=rf"index\.json: lists shard '{shard}', which is missing"):
        load_decoder(tmp_path / "sharded")


def test_ppm_export_records_the_tokenizer_pad_token_when_config_has_none(tmp_path):
    make_hf_model("qwen2", tmp_path / "policy", pad_token_id=None)
    tokenizer = write_bpe_tokenizer(tmp_path / "policy")
    ppm = PPM.from_policy(load_decoder(tmp_path / "policy"), nnx.Rngs(0))
    assert ppm.config.pad_token_id is None
    save_ppm(ppm, tmp_path / "ppm", tokenizer=tokenizer)
    config = json.loads((tmp_path / "ppm" / "config.json").read_text())
    assert config["pad_token_id"] == tokenizer.pad_token_id == 0
    assert (tmp_path / "ppm" / "tokenizer.json").is_file()


def test_export_replaces_an_earlier_export_without_stale_shards(qwen_dir, tmp_path):
    model = load_decoder(qwen_dir)
    save_decoder(model, tmp_path / "out", max_shard_bytes=20_000)
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    save_decoder(model, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "out"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: b"", r"model\.safetensors: not a safetensors file \(0 bytes"),
        (lambda raw: raw[:5], r"model\.safetensors: not a safetensors file \(5 bytes"),
        (lambda raw: raw[:100], r"model\.safetensors: not a safetensors file \(its header claims \d+ bytes"),
        (lambda raw: raw[:8] + b"#" + raw[9:], r"model\.safetensors: not a safetensors file \(unreadable header"),
        (lambda raw: raw[: len(raw) // 2], r"model\.safetensors: tensor '[\w.]+' .*past the end of the file"),
        (lambda raw: (2).to_bytes(8, "little") + b"[]", r"model\.safetensors: .*header is a JSON list"),
    ],
    ids=["empty", "short", "header_cut", "header_garbage", "data_cut", "header_list"],
)
def test_an_empty_truncated_or_corrupt_safetensors_file_is_named(qwen_dir, damage, message):
    from rstar_jax.evaluation.run import param_count
    from rstar_jax.models import safetensors_header

    path = qwen_dir / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    for read in (load_decoder, read_safetensors, param_count, lambda d: safetensors_header(d / "model.safetensors")):
        with pytest.raises(WeightsError, match=message):
            read(qwen_dir)


def test_a_corrupt_index_is_named(qwen_dir):
    (qwen_dir / "model.safetensors.index.json").write_text("")
    with pytest.raises(WeightsError, match=r"model\.safetensors\.index\.json: not a safetensors index"):
        load_decoder(qwen_dir)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_at_load_naming_file_and_tensor(qwen_dir, bad):
    tensors, _ = read_safetensors(qwen_dir)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    tensors["model.layers.0.mlp.up_proj.weight"][1, 2] = bad
    save_file(tensors, str(qwen_dir / "model.safetensors"))
    with pytest.raises(
        WeightsError, match=r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.up_proj\.weight' holds"
    ):
        load_decoder(qwen_dir)
