"""The toy domain's tiny policy: a from-scratch Qwen2-family decoder of about 1M parameters, saved as HF.

    tokenizer = train_toy_tokenizer(splits["train"], vocab_size=768)
    config = tiny_model_config(len(tokenizer))
    policy = write_tiny_model("out/tiny-policy", tokenizer, config, seed=0)
    policy = rstar_jax.models.load_decoder("out/tiny-policy")      # the same weights, as would transformers'
    tokenizer = rstar_jax.models.load_tokenizer("out/tiny-policy", policy.config)  # Qwen2ForCausalLM

`write_toy_base` is the `model.base=scratch` base of a run (`evolve.run`'s stage `base`): a BPE tokenizer
trained on the training split and a tiny decoder initialised from `config.seed`, saved as an HF directory
(config section `toy_model`); with `toy_model.read_per_band` > 0 the decoder is first pretrained on reading
documents of problems disjoint from both splits (`rstar_jax.toy.reading`, config section `pretrain`), playing the
paper's math-pretrained base.

Defaults (`TINY_DEFAULTS`): width 128, 4 layers, 4 query heads of 32 dims sharing 2 KV heads, MLP 384, tied
embeddings, q/k/v biases (Qwen2), RoPE base 10,000 and 1,024 positions. RoPE has no learned positions, so
`max_positions` only bounds what the sampling engine accepts (prompt + step tokens); it costs nothing. With the
768-entry toy BPE that is 0.89M parameters, 0.79M of them in the layers. Initialisation is the decoder's own
(N(0, 0.02²) weights, unit norms, zero biases), drawn from `seed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flax import nnx

from rstar_jax import processes
from rstar_jax.config import RunConfig, ToyModelConfig
from rstar_jax.data import Problem
from rstar_jax.models import Decoder, ModelConfig, init_model, save_decoder

__all__ = [
    "TINY_DEFAULTS",
    "init_tiny_policy",
    "setup_model_config",
    "tiny_model_config",
    "write_tiny_model",
    "write_toy_base",
]

TINY_DEFAULTS: dict[str, int] = {
    "hidden": 128,
    "layers": 4,
    "heads": 2,
    "kv_heads": 1,
    "intermediate": 384,
    "max_positions": 1024,
}
"""The recommended tiny shape (see the module docstring and benchmarks/bench_train.py for the measurements)."""


def tiny_model_config(
    vocab_size: int,
    hidden: int = TINY_DEFAULTS["hidden"],
    layers: int = TINY_DEFAULTS["layers"],
    heads: int = TINY_DEFAULTS["heads"],
    kv_heads: int = TINY_DEFAULTS["kv_heads"],
    intermediate: int = TINY_DEFAULTS["intermediate"],
    max_positions: int = TINY_DEFAULTS["max_positions"],
    *,
    rope_theta: float = 10000.0,
    eos_token_id: int | None = 1,
    pad_token_id: int | None = 0,
    param_dtype: str = "float32",
) -> ModelConfig:
    """A `qwen2` `ModelConfig` (tied embeddings, q/k/v biases, head_dim = hidden / heads).

    Args:
      vocab_size: embedding rows V, at least the tokenizer's length (`len(tokenizer)`).
      hidden, layers, heads, kv_heads, intermediate: D, L, N, K, F of the decoder's einsum legend.
      max_positions: the longest prompt + generation the model accepts.
      eos_token_id, pad_token_id: recorded in config.json (the toy tokenizer's `<|endoftext|>` = 1, `<|pad|>` = 0).
    """
    if vocab_size < 1 or hidden < 1 or layers < 1 or intermediate < 1 or max_positions < 1:
        raise ValueError(
            f"tiny_model_config: sizes must be >= 1, got vocab_size={vocab_size}, hidden={hidden}, layers={layers}, "
            f"intermediate={intermediate}, max_positions={max_positions}"
        )
    if heads < 1 or kv_heads < 1 or hidden % heads or heads % kv_heads:
        raise ValueError(
            f"tiny_model_config: need heads | hidden and kv_heads | heads, got hidden={hidden}, heads={heads}, "
            f"kv_heads={kv_heads}"
        )
    head_dim = hidden // heads
    if head_dim % 2:
        raise ValueError(f"tiny_model_config: head_dim = hidden / heads = {head_dim} must be even (RoPE)")
    return ModelConfig(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=1e-6,
        rope_theta=rope_theta,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        qkv_bias=True,
        param_dtype=param_dtype,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def setup_model_config(shape: ToyModelConfig, tokenizer: Any) -> ModelConfig:
    """`tiny_model_config` of the config's `toy_model` shape, with the embedding rows of `tokenizer` rounded up
    to a multiple of 64."""
    return tiny_model_config(
        -(-len(tokenizer) // 64) * 64,
        hidden=shape.hidden,
        layers=shape.layers,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        intermediate=shape.intermediate,
        max_positions=shape.max_positions,
    )


def init_tiny_policy(config: ModelConfig, seed: int) -> Decoder:
    """A freshly initialised `Decoder` for `config`, drawn from `seed` (same seed, same weights)."""
    return init_model(Decoder, config, seed)


def write_tiny_model(
    out_dir: str | os.PathLike, tokenizer: Any, config: ModelConfig, seed: int, model: Decoder | None = None
) -> Decoder:
    """Save a from-scratch policy (or `model`, e.g. a trained one) with `tokenizer` as an HF directory.

    The directory holds config.json, model.safetensors and the tokenizer files; `rstar_jax.models.load_decoder`
    / `load_tokenizer` and transformers' `Qwen2ForCausalLM` / `AutoTokenizer` load it. Raises ValueError when the
    tokenizer has more entries than `config.vocab_size`. Returns the saved decoder.
    """
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"write_tiny_model: tokenizer has {len(tokenizer)} entries but config.vocab_size={config.vocab_size}"
        )
    policy = init_tiny_policy(config, seed) if model is None else model
    save_decoder(policy, Path(out_dir), tokenizer=tokenizer)
    return policy


def write_toy_base(
    cfg: RunConfig,
    train: Sequence[Problem],
    test: Sequence[Problem],
    out_dir: Path,
    work_dir: Path,
    mesh: Any = None,
) -> tuple[list[Path], dict[str, float]]:
    """Trains the toy BPE tokenizer on `train` and saves it with a tiny decoder, from scratch or reading-pretrained
    (module docstring; the pretraining checkpoints in `work_dir` make a killed run resume) on `mesh` (default: one
    device). Every process of a run calls it; process 0 writes the model. Returns the files and the pretraining's
    final metrics (empty without it)."""
    from rstar_jax.toy.tokenizer import train_toy_tokenizer

    m = cfg.toy_model
    tokenizer = train_toy_tokenizer(train, vocab_size=m.vocab)
    config = setup_model_config(m, tokenizer)
    model = init_tiny_policy(config, cfg.seed)
    metrics: dict[str, float] = {}
    if m.read_per_band:
        from rstar_jax.toy.reading import reading_examples, reading_problems
        from rstar_jax.train import sft_loss, split_by_problem
        from rstar_jax.train import train as train_loop

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False)

        bands = tuple(b.value for b in cfg.toy.bands)
        docs = reading_problems([*train, *test], m.read_per_band, cfg.seed, bands)
        examples = reading_examples(docs, encode, int(tokenizer.eos_token_id), cfg.pretrain.max_length)
        fit_ex, held = split_by_problem(examples, cfg.pretrain.eval_fraction, cfg.pretrain.seed)
        model, metrics = train_loop(
            model,
            sft_loss,
            fit_ex,
            cfg=cfg.pretrain,
            workdir=work_dir,
            eval_examples=held,
            mesh=mesh,
            progress=cfg.progress_bars,
        )
        metrics["documents"] = float(len(examples))
    nnx.update(model, processes.gathered(nnx.state(model)))  # whole arrays on every process
    if processes.is_leader():
        write_tiny_model(out_dir, tokenizer, config, seed=cfg.seed, model=model)
    processes.barrier(f"{out_dir}:written")
    return sorted(p for p in out_dir.iterdir() if p.is_file()), metrics
