"""Typed decoder configuration, read from a Hugging Face `config.json`.

`ModelConfig` holds everything the Flax decoder needs and nothing else. It is frozen (hashable), so it can be
a static argument of `jax.jit`. `ModelConfig.from_hf_dict` accepts the `config.json` of the three supported
families and rejects anything it cannot reproduce exactly, naming the file and the key:

- `qwen2`: Qwen2 / Qwen2.5 / Qwen2.5-Math (q/k/v bias, grouped-query attention, tied or untied embeddings);
- `llama`: Llama 2/3 style decoders, default or Llama-3.1 rope scaling (no attention or MLP biases);
- `phi3`: Phi-3 (fused `qkv_proj` / `gate_up_proj` on disk, partial rotary, default or LongRoPE scaling,
  sliding window).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("qwen2", "llama", "phi3")
CAUSAL_LM_ARCHITECTURE: dict[str, str] = {
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
    "phi3": "Phi3ForCausalLM",
}
_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class ConfigError(ValueError):
    """A `config.json` that rstar_jax cannot reproduce exactly; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class LongRope:
    """Phi-3 LongRoPE scaling: per-frequency divisors, the short set up to `original_max_positions`."""

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    original_max_positions: int
    attention_factor: float


@dataclasses.dataclass(frozen=True)
class Llama3Rope:
    """Llama 3.1 rope scaling: low frequencies divided by `factor`, a smooth ramp between the two bands."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_positions: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and numerics of one decoder. Letters match the decoder's einsum legend.

    vocab_size V (embedding rows, may exceed the tokenizer), hidden_size D, intermediate_size F,
    num_layers L, num_heads N, num_kv_heads K, head_dim H.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    partial_rotary_factor: float = 1.0
    rope_scaling: LongRope | Llama3Rope | None = None
    sliding_window: int | None = None
    param_dtype: str = "float32"
    remat: bool = False  # recompute each layer's activations in the backward pass (`jax.checkpoint`); training only
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    @property
    def rotary_dim(self) -> int:
        """Number of leading head dimensions that are rotated (Phi-3 may rotate only a fraction)."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def dtype(self) -> Any:
        """The jnp dtype of parameters and activations (softmax and norms always run in fp32)."""
        return _DTYPES[self.param_dtype]

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Build from a parsed HF `config.json`; `source` names the file in every error."""
        return _parse(raw, source)

    def to_hf_dict(self) -> dict[str, Any]:
        """An HF `config.json` for the `*ForCausalLM` of this family that transformers loads silently."""
        out: dict[str, Any] = {
            "architectures": [CAUSAL_LM_ARCHITECTURE[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.param_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        rope: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.model_type == "qwen2":
            out["use_sliding_window"] = False
            out["sliding_window"] = None
        if self.model_type == "llama":
            out["attention_bias"] = False
            out["mlp_bias"] = False
            if isinstance(self.rope_scaling, Llama3Rope):
                rope.update(dataclasses.asdict(self.rope_scaling), rope_type="llama3")
                rope["original_max_position_embeddings"] = rope.pop("original_max_positions")
        if self.model_type == "phi3":
            out["sliding_window"] = self.sliding_window
            out["partial_rotary_factor"] = self.partial_rotary_factor
            rope["partial_rotary_factor"] = self.partial_rotary_factor
            if isinstance(self.rope_scaling, LongRope):
                lr = self.rope_scaling
                out["original_max_position_embeddings"] = lr.original_max_positions
                rope.update(
                    rope_type="longrope",
                    short_factor=list(lr.short_factor),
                    long_factor=list(lr.long_factor),
                    original_max_position_embeddings=lr.original_max_positions,
                    attention_factor=lr.attention_factor,
                )
        out["rope_parameters"] = rope
        return out


def load_config(model_dir: str | Path) -> ModelConfig:
    """Read `<model_dir>/config.json`; errors name the path."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; a Hugging Face model directory needs a config.json")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    return ModelConfig.from_hf_dict(raw, str(path))


def _get(raw: dict[str, Any], key: str, source: str) -> Any:
    if key not in raw or raw[key] is None:
        raise ConfigError(f"{source}: required key {key!r} is missing")
    return raw[key]


def _rope_params(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Merge the transformers-5 `rope_parameters` with legacy `rope_theta` / `rope_scaling` keys."""
    rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope.setdefault("rope_theta", raw.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    rope["rope_type"] = "longrope" if kind in ("su", "longrope") else kind
    if rope["rope_type"] not in ("default", "longrope", "llama3"):
        raise ConfigError(
            f"{source}: rope type {kind!r} in 'rope_parameters'/'rope_scaling' is not supported "
            "(supported: 'default', 'longrope' for phi3, 'llama3' for llama)"
        )
    return rope


def _parse(raw: dict[str, Any], source: str) -> ModelConfig:
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"{source}: model_type {model_type!r} (architectures {raw.get('architectures')}) is not supported; "
            f"supported model_type values: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"{source}: hidden_act {act!r} is not supported (only 'silu')")
    for key in ("mlp_bias", "attention_bias"):
        if raw.get(key):
            raise ConfigError(f"{source}: {key}=true is not supported (only Qwen2's q/k/v biases are)")
    if model_type == "qwen2" and raw.get("use_sliding_window"):
        raise ConfigError(f"{source}: use_sliding_window=true is not supported for qwen2")
    hidden = int(_get(raw, "hidden_size", source))
    heads = int(_get(raw, "num_attention_heads", source))
    kv_heads = int(raw.get("num_key_value_heads") or heads)
    if heads % kv_heads:
        raise ConfigError(f"{source}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    head_dim = int(raw.get("head_dim") or hidden // heads)
    rope = _rope_params(raw, source)
    partial = float(rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)))
    max_pos = int(_get(raw, "max_position_embeddings", source))
    scaling: LongRope | Llama3Rope | None = None
    if rope["rope_type"] != "default" and (model_type, rope["rope_type"]) not in (
        ("phi3", "longrope"),
        ("llama", "llama3"),
    ):
        raise ConfigError(f"{source}: rope type {rope['rope_type']!r} is not supported for {model_type!r}")
    if rope["rope_type"] == "longrope":
        scaling = _long_rope(raw, rope, max_pos, int(head_dim * partial) // 2, source)
    if rope["rope_type"] == "llama3":
        scaling = _llama3_rope(rope, source)
    dtype = str(raw.get("dtype") or raw.get("torch_dtype") or "float32")
    if dtype not in _DTYPES:
        raise ConfigError(f"{source}: dtype {dtype!r} is not supported ({', '.join(_DTYPES)})")
    eos = raw.get("eos_token_id")
    return ModelConfig(
        model_type=model_type,
        vocab_size=int(_get(raw, "vocab_size", source)),
        hidden_size=hidden,
        intermediate_size=int(_get(raw, "intermediate_size", source)),
        num_layers=int(_get(raw, "num_hidden_layers", source)),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5 if model_type == "phi3" else 1e-6)),
        rope_theta=float(rope["rope_theta"]),
        max_position_embeddings=max_pos,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
        partial_rotary_factor=partial,
        rope_scaling=scaling,
        sliding_window=raw.get("sliding_window") if model_type == "phi3" else None,
        param_dtype=dtype,
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=raw.get("pad_token_id"),
    )


def _long_rope(raw: dict[str, Any], rope: dict[str, Any], max_pos: int, half: int, source: str) -> LongRope:
    short, long = rope.get("short_factor"), rope.get("long_factor")
    for name, factors in (("short_factor", short), ("long_factor", long)):
        if not isinstance(factors, list) or len(factors) != half:
            raise ConfigError(f"{source}: rope {name} must be a list of {half} numbers (rotary_dim / 2)")
    original = int(
        rope.get("original_max_position_embeddings") or _get(raw, "original_max_position_embeddings", source)
    )
    factor = float(rope.get("factor") or max_pos / original)
    attention_factor = rope.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return LongRope(tuple(map(float, short)), tuple(map(float, long)), original, float(attention_factor))


def _llama3_rope(rope: dict[str, Any], source: str) -> Llama3Rope:
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if rope.get(k) is None]
    if missing:
        raise ConfigError(f"{source}: llama3 rope parameters lack {missing}")
    return Llama3Rope(
        float(rope["factor"]),
        float(rope["low_freq_factor"]),
        float(rope["high_freq_factor"]),
        int(rope["original_max_position_embeddings"]),
    )
