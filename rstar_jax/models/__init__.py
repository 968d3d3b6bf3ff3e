"""The model family: one Flax NNX decoder (Qwen2 / Llama / Phi-3), the PPM, HF interop and sharding.

from rstar_jax import models
policy = models.load_decoder("Qwen2.5-Math-1.5B")              # HF directory -> Decoder
tokenizer = models.load_tokenizer("Qwen2.5-Math-1.5B", policy.config)
models.add_rstar_tokens(tokenizer)
policy = models.fit_embeddings(policy, len(tokenizer))
logits, cache = policy(tokens, positions, mask)                 # [B, T] each -> [B, T, V]
ppm = models.PPM.from_policy(policy, nnx.Rngs(0))
models.save_ppm(ppm, "out/ppm", tokenizer=tokenizer)            # HF *ForSequenceClassification
"""

from rstar_jax.models.config import SUPPORTED_MODEL_TYPES, ConfigError, Llama3Rope, LongRope, ModelConfig, load_config
from rstar_jax.models.decoder import (
    Decoder,
    DecoderLayers,
    KVCache,
    Prefix,
    Trunk,
    abstract_decoder,
    count_params,
    init_model,
)
from rstar_jax.models.hf_io import (
    WeightsError,
    build_from_arrays,
    check_weight_headers,
    load_decoder,
    load_ppm,
    read_safetensors,
    safetensors_header,
    save_decoder,
    save_ppm,
)
from rstar_jax.models.ppm import PPM, last_real_index
from rstar_jax.models.sharding import (
    LOGICAL_AXIS_RULES,
    MESH_AXES,
    MeshConfig,
    constrain,
    logical_to_spec,
    make_mesh,
    named_sharding,
    state_shardings,
)
from rstar_jax.models.tokenizer import (
    RSTAR_SPECIAL_TOKENS,
    TokenizerError,
    add_rstar_tokens,
    check_fits,
    fit_embeddings,
    load_tokenizer,
)

__all__ = [
    "LOGICAL_AXIS_RULES",
    "MESH_AXES",
    "PPM",
    "RSTAR_SPECIAL_TOKENS",
    "SUPPORTED_MODEL_TYPES",
    "ConfigError",
    "Decoder",
    "DecoderLayers",
    "KVCache",
    "Llama3Rope",
    "LongRope",
    "MeshConfig",
    "ModelConfig",
    "Prefix",
    "TokenizerError",
    "Trunk",
    "WeightsError",
    "abstract_decoder",
    "add_rstar_tokens",
    "build_from_arrays",
    "check_weight_headers",
    "check_fits",
    "constrain",
    "count_params",
    "fit_embeddings",
    "init_model",
    "last_real_index",
    "load_config",
    "load_decoder",
    "load_ppm",
    "load_tokenizer",
    "logical_to_spec",
    "make_mesh",
    "named_sharding",
    "read_safetensors",
    "safetensors_header",
    "save_decoder",
    "save_ppm",
    "state_shardings",
]
