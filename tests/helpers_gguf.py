"""Shared test helper: tiny GGUF files written with the `gguf` package (llama.cpp's on-disk format).

`write_tiny_gguf` writes a one-layer fp32 decoder with a byte-level BPE tokenizer of a few dozen tokens, the
metadata transformers' GGUF loader reads; arguments make it wrong in one way (another architecture, a tokenizer
with more entries than the embedding has rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz") + ("Ġ", "ab", "Ġa")
MERGES = ("a b", "Ġ a")
CONTROL, NORMAL = 3, 1


def tiny_tokens(extra: int = 0) -> list[str]:
    """The vocabulary: three control tokens, the letters, a space and two merges, plus `extra` filler tokens."""
    return [*SPECIAL, *LETTERS, *(f"x{i}" for i in range(extra))]


def write_tiny_gguf(
    path: str | Path, arch: str = "llama", extra_tokens: int = 0, embedding_rows: int | None = None, seed: int = 0
) -> Path:
    """A 1-layer decoder (hidden 16, 2 query / 1 KV heads, head dim 8, MLP 32) as an fp32 GGUF file.

    `embedding_rows` (default: the vocabulary size) sets the embedding's rows independently of the tokenizer.
    """
    import gguf

    path = Path(path)
    tokens = tiny_tokens(extra_tokens)
    rows = len(tokens) if embedding_rows is None else embedding_rows
    D, F, N, K, H = 16, 32, 2, 1, 8
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_block_count(1)
    w.add_head_count(N)
    w.add_head_count_kv(K)
    w.add_rope_dimension_count(H)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(rows)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([CONTROL] * len(SPECIAL) + [NORMAL] * (len(tokens) - len(SPECIAL)))
    w.add_token_merges(list(MERGES))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    rng = np.random.default_rng(seed)
    normal = lambda *shape: (0.3 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    tensors = {
        "token_embd.weight": normal(rows, D),
        "output_norm.weight": 1.0 + normal(D),
        "blk.0.attn_norm.weight": 1.0 + normal(D),
        "blk.0.ffn_norm.weight": 1.0 + normal(D),
        "blk.0.attn_q.weight": normal(N * H, D),
        "blk.0.attn_k.weight": normal(K * H, D),
        "blk.0.attn_v.weight": normal(K * H, D),
        "blk.0.attn_output.weight": normal(D, N * H),
        "blk.0.ffn_gate.weight": normal(F, D),
        "blk.0.ffn_up.weight": normal(F, D),
        "blk.0.ffn_down.weight": normal(D, F),
    }
    for name, value in tensors.items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
