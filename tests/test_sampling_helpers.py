"""Helpers of the sampling tests (imported by the other test_sampling_* modules) and their own checks.

`byte_bpe_tokenizer` is a byte-level BPE with a byte-level decoder (as Qwen2's), so decoding concatenates
token texts exactly; the rStar special tokens are added on top.
"""

from pathlib import Path

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rstar_jax.models import add_rstar_tokens

CORPUS = [
    "compute 3 + 4 = 7 and print the answer",
    "x = 12 * 7\nprint(x)",
    "let's think step by step and solve the problem with code",
    "the cat sat on the mat",
] * 25


def byte_bpe_tokenizer(out_dir: str | Path, vocab_size: int = 320) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE trained on CORPUS, saved and reloaded through transformers, rStar tokens added."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")
    fast.save_pretrained(str(out_dir))
    loaded = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    add_rstar_tokens(loaded)
    return loaded


def test_byte_bpe_tokenizer_round_trips(tmp_path):
    tok = byte_bpe_tokenizer(tmp_path)
    text = "x = 12 * 7\nprint(x)<end_of_step>the answer"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.convert_tokens_to_ids("<end_of_step>") in ids and tok.eos_token_id == 2
