"""Tokenizer loading, the rStar special tokens, and fitting the embedding to the tokenizer.

The tokenizer comes from the model directory (`tokenizer.json`, or a sentencepiece `tokenizer.model` for
Llama / Phi-3) through transformers. `add_rstar_tokens` appends the 15 rStar tokens in the reference order,
skipping any already present, so calling it twice changes nothing. `fit_embeddings` then grows the embedding
(and an untied LM head) to the tokenizer with new rows set to the mean of the existing rows; a padded
embedding that already has room (Qwen2.5: 151,936 / 152,064 rows) is kept as it is, never shrunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import nnx

from rstar_jax.models.config import ModelConfig

RSTAR_SPECIAL_TOKENS: tuple[str, ...] = (
    "<code>",
    "<end_of_step>",
    "<end_of_code>",
    "<output>",
    "<end_of_output>",
    "<answer>",
    "<end_of_answer>",
    "<|user|>",
    "<|assistant|>",
    "<refine>",
    "<end_of_refine>",
    "\n<|assistant|>",
    "<error_info>",
    "<end_of_error_info>",
    "<BACK>",
)
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer.model")


class TokenizerError(ValueError):
    """A tokenizer that does not fit its model; the message names the files."""


def tokenizer_file(model_dir: str | Path) -> Path:
    """The tokenizer file of `model_dir` (tokenizer.json preferred over tokenizer.model)."""
    for name in TOKENIZER_FILES:
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
    raise TokenizerError(f"{model_dir}: no tokenizer file (looked for {', '.join(TOKENIZER_FILES)})")


def load_tokenizer(model_dir: str | Path, config: ModelConfig | None = None) -> Any:
    """The HF tokenizer of `model_dir`; with `config`, checks it fits the embedding (vocab_size rows)."""
    path = tokenizer_file(model_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if config is not None:
        check_fits(tokenizer, config, path, Path(model_dir) / "config.json")
    return tokenizer


def check_fits(tokenizer: Any, config: ModelConfig, tokenizer_path: Any, config_path: Any) -> None:
    """Raise if the tokenizer has more entries than the embedding has rows (ids would index out of range)."""
    if len(tokenizer) > config.vocab_size:
        raise TokenizerError(
            f"{tokenizer_path}: tokenizer has {len(tokenizer)} entries but {config_path} has vocab_size="
            f"{config.vocab_size} embedding rows; the tokenizer must not exceed the embedding"
        )


def add_rstar_tokens(tokenizer: Any) -> int:
    """Add the missing rStar special tokens, in reference order; returns how many were added."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in RSTAR_SPECIAL_TOKENS if t not in vocab]
    return tokenizer.add_tokens(missing, special_tokens=True) if missing else 0


def fit_embeddings(model: Any, num_tokens: int) -> Any:
    """`model` (Decoder or PPM) with at least `num_tokens` embedding rows.

    Returns `model` itself when it already has room; otherwise a new model of the same class whose
    embedding [V', D] (and untied LM head [D, V']) gains `V' - V` rows equal to the mean of the old rows.
    """
    config: ModelConfig = model.config
    if num_tokens <= config.vocab_size:
        return model
    extra = num_tokens - config.vocab_size
    pure = nnx.to_pure_dict(nnx.state(model))
    embed = pure["trunk"]["embed"]  # [V, D]
    mean = jnp.mean(embed.astype(jnp.float32), axis=0, keepdims=True).astype(embed.dtype)
    pure["trunk"]["embed"] = jnp.concatenate([embed, jnp.repeat(mean, extra, axis=0)], axis=0)
    if pure.get("lm_head") is not None:
        head = pure["lm_head"]  # [D, V]
        head_mean = jnp.mean(head.astype(jnp.float32), axis=1, keepdims=True).astype(head.dtype)
        pure["lm_head"] = jnp.concatenate([head, jnp.repeat(head_mean, extra, axis=1)], axis=1)
    new_config = config.replace(vocab_size=num_tokens)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: type(model)(new_config, rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)
