"""Published model shapes, for memory plans and benchmarks without weights (no network, no checkpoint).

    config = ModelShape.QWEN25_MATH_7B.config   # a ModelConfig with the real published sizes

The values are those of the models' `config.json` on the Hugging Face Hub (Qwen/Qwen2.5-Math-1.5B and
Qwen/Qwen2.5-Math-7B): hidden size, layers, attention / KV heads, MLP width, vocabulary, context, embedding tying.
"""

from __future__ import annotations

import enum

from rstar_jax.models.config import ModelConfig

__all__ = ["QWEN25_MATH_1P5B", "QWEN25_MATH_7B", "ModelShape"]

QWEN25_MATH_1P5B = ModelConfig(
    model_type="qwen2",
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
    qkv_bias=True,
    param_dtype="bfloat16",
    bos_token_id=151643,
    eos_token_id=151643,
)
"""Qwen/Qwen2.5-Math-1.5B: 1,543,714,304 parameters (embeddings tied)."""

QWEN25_MATH_7B = ModelConfig(
    model_type="qwen2",
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_layers=28,
    num_heads=28,
    num_kv_heads=4,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    max_position_embeddings=4096,
    tie_word_embeddings=False,
    qkv_bias=True,
    param_dtype="bfloat16",
    bos_token_id=151643,
    eos_token_id=151643,
)
"""Qwen/Qwen2.5-Math-7B: 7,615,616,512 parameters (untied LM head)."""


class ModelShape(enum.StrEnum):
    """A named published shape, as `model.base` accepts it in `launch.plan` and the benchmarks."""

    QWEN25_MATH_1P5B = "qwen2.5-math-1.5b"
    QWEN25_MATH_7B = "qwen2.5-math-7b"

    @property
    def config(self) -> ModelConfig:
        return QWEN25_MATH_1P5B if self is ModelShape.QWEN25_MATH_1P5B else QWEN25_MATH_7B
