"""ModelConfig from HF config.json: real Qwen2.5-Math parameter counts (abstract), validation errors."""

import json

import pytest

from rstar_jax.models import ConfigError, ModelConfig, abstract_decoder, count_params, load_config

# The config.json files of Qwen/Qwen2.5-Math-1.5B and Qwen/Qwen2.5-Math-7B as published.
QWEN25_MATH_1_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 4096,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000,
    "sliding_window": 4096,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.37.0",
    "use_cache": True,
    "use_mrope": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN25_MATH_7B = QWEN25_MATH_1_5B | {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_window_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
    "vocab_size": 152064,
}


@pytest.mark.parametrize(
    ("raw", "expected"), [(QWEN25_MATH_1_5B, 1_543_714_304), (QWEN25_MATH_7B, 7_615_616_512)], ids=["1.5B", "7B"]
)
def test_qwen25_math_parameter_counts_are_exact(raw, expected):
    config = ModelConfig.from_hf_dict(raw)
    assert config.param_dtype == "bfloat16" and config.qkv_bias
    model = abstract_decoder(config)
    assert count_params(model) == expected
    assert (model.lm_head is None) == raw["tie_word_embeddings"]


def test_to_hf_dict_round_trips_through_from_hf_dict():
    for raw in (QWEN25_MATH_1_5B, QWEN25_MATH_7B):
        config = ModelConfig.from_hf_dict(raw)
        assert ModelConfig.from_hf_dict(config.to_hf_dict()) == config


def test_missing_config_json_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.json: missing"):
        load_config(tmp_path)


def test_unsupported_architecture_names_file_and_allowed_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_MATH_1_5B | {"model_type": "gemma2"}))
    with pytest.raises(ConfigError, match=r"config\.json: model_type 'gemma2'.*qwen2, llama, phi3"):
        load_config(tmp_path)


def test_missing_key_and_unsupported_options_name_the_key(tmp_path):
    raw = dict(QWEN25_MATH_1_5B)
    del raw["hidden_size"]
    with pytest.raises(ConfigError, match="my.json: required key 'hidden_size'"):
        ModelConfig.from_hf_dict(raw, "my.json")
    with pytest.raises(ConfigError, match="rope type 'yarn'"):
        ModelConfig.from_hf_dict(QWEN25_MATH_1_5B | {"rope_scaling": {"type": "yarn", "factor": 4.0}})
    with pytest.raises(ConfigError, match="use_sliding_window"):
        ModelConfig.from_hf_dict(QWEN25_MATH_1_5B | {"use_sliding_window": True})
    with pytest.raises(ConfigError, match="hidden_act 'gelu'"):
        ModelConfig.from_hf_dict(QWEN25_MATH_1_5B | {"hidden_act": "gelu"})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path)


def test_phi3_long_rope_is_parsed_with_the_paper_attention_factor():
    raw = {
        "model_type": "phi3",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 96,
        "max_position_embeddings": 64,
        "original_max_position_embeddings": 16,
        "rope_scaling": {"type": "su", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4},
    }
    config = ModelConfig.from_hf_dict(raw)
    assert config.rope_scaling is not None and config.rope_scaling.original_max_positions == 16
    assert config.rope_scaling.attention_factor == pytest.approx(1.5**0.5)  # sqrt(1 + ln 4 / ln 16)
    with pytest.raises(ConfigError, match="short_factor must be a list of 4"):
        ModelConfig.from_hf_dict(raw | {"rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [1.0]}})


# microsoft/Phi-3-mini-4k-instruct config.json (fields that matter); 3,821,079,552 parameters.
PHI3_MINI_4K = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": 32064,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "pad_token_id": 32000,
}


def test_phi3_mini_parameter_count_and_window():
    config = ModelConfig.from_hf_dict(PHI3_MINI_4K)
    assert config.sliding_window == 2047 and config.rope_scaling is None and config.head_dim == 96
    assert count_params(abstract_decoder(config)) == 3_821_079_552
