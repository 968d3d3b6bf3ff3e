"""Shared test helper: tiny random Hugging Face checkpoints and tokenizers written in the real on-disk format.

No weights are downloaded anywhere in the test suite; every model here is built by transformers itself from a
1-2 layer config and saved with `save_pretrained` (safetensors, optionally sharded with an index file).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

FAMILIES: tuple[str, ...] = ("qwen2", "llama", "phi3")
TINY_VOCAB = 96

_BASE: dict[str, Any] = dict(
    vocab_size=TINY_VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
_CLASSES: dict[str, tuple[type, type]] = {
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
}


def tiny_config(family: str, **overrides: Any) -> Any:
    """A transformers config of `family` with 2 layers, hidden 32, 4 query / 2 KV heads, vocab 96."""
    extra: dict[str, Any] = {"rope_theta": 10000.0}
    if family == "qwen2":
        extra |= {"tie_word_embeddings": True, "rope_theta": 1000000.0}
    if family == "llama":
        extra |= {"tie_word_embeddings": False, "attention_bias": False, "rms_norm_eps": 1e-5}
    return _CLASSES[family][0](**(_BASE | extra | overrides))


def make_hf_model(
    family: str, out_dir: str | Path, seed: int = 0, max_shard_size: str | None = None, **overrides: Any
) -> Any:
    """Build a random fp32 `*ForCausalLM`, perturb its norms and biases (so they matter), save it, return it."""
    torch.manual_seed(seed)
    model = _CLASSES[family][1](tiny_config(family, **overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                param.add_(0.1 * torch.randn_like(param))
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(str(out_dir), **kwargs)
    return model


def hf_and_decoder(family: str, out_dir: str | Path) -> tuple[Any, Any]:
    """(`make_hf_model(family, out_dir)` with its generation EOS disabled, our `Decoder` loaded from `out_dir`)."""
    from rstar_jax.models import load_decoder

    hf = make_hf_model(family, out_dir)
    hf.generation_config.eos_token_id = None
    return hf, load_decoder(out_dir)


def ragged_batch(batch: int, length: int, vocab: int, seed: int, left: bool) -> tuple[np.ndarray, ...]:
    """Random prompts of lengths between 1 and `length`, padded with id 0 on the left or right.

    Returns tokens [B, T] int32, mask [B, T] bool, positions [B, T] int32 (0 on padding, 0.. on real tokens).
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    tokens = np.zeros((batch, length), np.int32)
    mask = np.zeros((batch, length), bool)
    for b, n in enumerate(lengths):
        sl = slice(length - n, length) if left else slice(0, n)
        tokens[b, sl] = rng.integers(3, vocab, size=n)
        mask[b, sl] = True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def torch_logits(model: Any, tokens: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """transformers' logits [B, T, V] for the same ragged batch (explicit position ids)."""
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(tokens.astype(np.int64)),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
            position_ids=torch.from_numpy(positions.astype(np.int64)),
        )
    return out.logits.float().numpy()


_CORPUS = [
    "the cat sat on the mat",
    "compute 3 + 4 = 7 and print the answer",
    "x = 12 * 7\nprint(x)",
    "let's think step by step and solve the problem with code",
] * 25


def write_bpe_tokenizer(out_dir: str | Path, vocab_size: int = 64) -> Any:
    """A `tokenizer.json` (tokenizers BPE trained on a tiny corpus) saved through transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator(_CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(out_dir))
    return fast


def write_sentencepiece_tokenizer(out_dir: str | Path, vocab_size: int = 60) -> None:
    """A sentencepiece `tokenizer.model` with a Llama tokenizer_config.json (as Llama / Phi-3 ship)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(buf.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
