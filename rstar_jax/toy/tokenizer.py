"""The toy domain's BPE tokenizer: Qwen2-style byte-level BPE trained on training-split prompts and solutions.

    tokenizer = train_toy_tokenizer(splits["train"], vocab_size=768)   # a transformers Qwen2Tokenizer
    save_toy_tokenizer(tokenizer, "out/tiny")      # tokenizer.json + tokenizer_config.json (special tokens inside)
    tokenizer = rstar_jax.models.load_tokenizer("out/tiny")

Corpus (`toy_corpus`): per problem, the policy prompt (`build_prompt`, the one-newline template of
rstar_reference.md Part A) and its canonical full trajectory (`canonical_response`: code steps, output block,
answer step), i.e. what the round-1 teacher's correct trajectories and the SFT records look like. Only the training
split: a ``toy/test/...`` problem id raises.

Entries, in id order: `<|pad|>` (0), `<|endoftext|>` (1, EOS), the 15 rStar tags of `RSTAR_SPECIAL_TOKENS` (2-16;
each ONE special token, matched before pre-tokenization, longest first, so `"\\n<|assistant|>"` wins over
`"<|assistant|>"`), the 256 byte symbols (any text encodes: execution errors shown in prompts may hold any
character), the learned merges, then the whole-number tokens ("10".."99" by default, `number_tokens`), up to
`vocab_size` in all. The trainer sees the corpus cut at the special tokens, as encoding does, so no merge is spent
on a tag's characters.

Pipeline: exactly Qwen2's — NFC, Qwen2's pre-tokenizer regex (every digit its own token; a word with at most one
leading space or punctuation mark; newline runs), byte-level without an added prefix space — and the tokenizer is a
`Qwen2Tokenizer` (tokenizer_class in tokenizer_config.json). This is forced, not a taste: transformers 5 loads any
directory whose config.json says ``model_type: qwen2`` as `Qwen2Tokenizer`, which rebuilds that pipeline from
vocab and merges whatever tokenizer.json says; a tokenizer trained with another pre-tokenizer (e.g. number chunks,
or merges across spaces) would silently encode differently once saved next to the tiny Qwen2 policy.

Numbers: Qwen2's regex isolates every digit, so whole numbers come from added (non-special) tokens, which are
matched left to right, longest first, before pre-tokenization and survive that reload: with `number_digits=2`
every toy literal (at most 99) is ONE token, copied from question to comment to code in one step instead of digit by
digit, and longer values split left to right ("1234" -> "12" "34", "105" -> "10" "5"). `number_digits=1` keeps
single digits only.

Round trip: `decode(encode(x)) == x` for NFC text (all toy text is ASCII), newlines and tags included, with
`clean_up_tokenization_spaces=False`; every token decodes on its own to its exact text (what
`sampling.stops.StopScanner` relies on). Determinism: the corpus is built in problem order and the trainer is
deterministic, so the same problems and settings give a byte-identical tokenizer.json.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rstar_jax.data import Problem
from rstar_jax.models import RSTAR_SPECIAL_TOKENS
from rstar_jax.search.steps import build_prompt
from rstar_jax.toy.solution import answer_step, code_steps, output_block

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "canonical_response",
    "number_tokens",
    "save_toy_tokenizer",
    "toy_corpus",
    "train_toy_tokenizer",
]

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, EOS_TOKEN, *RSTAR_SPECIAL_TOKENS)
_BYTE_SYMBOLS = 256
_SPECIAL_SPLIT = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True)))


def canonical_response(problem: Problem) -> str:
    """The full canonical trajectory of a toy problem: code steps, the output block and the answer step."""
    return "".join(code_steps(problem)) + output_block(problem.answer) + answer_step(problem.answer)


def _check_split(problems: Sequence[Problem]) -> None:
    """Refuse test-split problems (ids ``toy/test/...``): the tokenizer must see the training split only."""
    held_out = [p.id for p in problems if p.id.split("/")[:2] == ["toy", "test"]]
    if held_out:
        raise ValueError(
            f"rstar_jax/toy/tokenizer.py: {len(held_out)} test-split problems given (first {held_out[0]!r}); "
            "train the tokenizer on the training split only"
        )


def toy_corpus(problems: Sequence[Problem]) -> list[str]:
    """Per problem, in order: its policy prompt and its canonical response (2 texts per problem)."""
    _check_split(problems)
    corpus: list[str] = []
    for problem in problems:
        corpus.append(build_prompt(problem.question, ()))
        corpus.append(canonical_response(problem))
    return corpus


def _backend(vocab_size: int) -> tuple[Any, Any]:
    """An untrained `tokenizers.Tokenizer` with Qwen2's pipeline, and its BPE trainer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    return tok, trainer


def number_tokens(number_digits: int) -> list[str]:
    """The whole-number tokens for `number_digits` (1: none; 2: "10".."99"; 3: "10".."999")."""
    if number_digits not in (1, 2, 3):
        raise ValueError(f"rstar_jax/toy/tokenizer.py: number_digits={number_digits}; use 1, 2 or 3")
    return [str(n) for n in range(10, 10**number_digits)]


def train_toy_tokenizer(
    problems: Sequence[Problem], vocab_size: int = 768, texts: Iterable[str] = (), number_digits: int = 2
) -> Any:
    """A byte-level BPE `transformers.Qwen2Tokenizer` trained on `problems` (module docstring).

    Args:
      problems: training-split toy problems (a ``toy/test/...`` id raises ValueError).
      vocab_size: the most entries: 17 special tokens, 256 byte symbols, the number tokens and the merges (at
        least 274 + number tokens). Merges stop earlier when no pair occurs twice (about 800 entries for 600
        training problems).
      texts: extra training texts after the corpus (e.g. teacher trajectories of training problems).
      number_digits: numbers up to this many digits are one token (added tokens "10".."99" for 2); longer
        numbers are cut left to right ("1234" -> "12" "34"); 1 keeps Qwen2's single digits only.

    Returns:
      The tokenizer: `eos_token` `<|endoftext|>` (id 1), `pad_token` `<|pad|>` (id 0), the rStar tags as extra
      special tokens, no BOS and nothing added when encoding.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    numbers = number_tokens(number_digits)
    minimum = len(SPECIAL_TOKENS) + _BYTE_SYMBOLS + len(numbers) + 1
    if vocab_size < minimum:
        raise ValueError(
            f"rstar_jax/toy/tokenizer.py: vocab_size={vocab_size} < {minimum} (specials + bytes + numbers + 1)"
        )
    corpus = [*toy_corpus(problems), *texts]
    if not corpus:
        raise ValueError("rstar_jax/toy/tokenizer.py: no training problems")
    pieces = [piece for text in corpus for piece in _SPECIAL_SPLIT.split(text) if piece]
    tok, trainer = _backend(vocab_size - len(numbers))
    tok.train_from_iterator(pieces, trainer, length=len(pieces))
    model = json.loads(tok.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(pair) for pair in model["merges"]],
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        extra_special_tokens=list(RSTAR_SPECIAL_TOKENS),
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
    )
    tokenizer.add_tokens([AddedToken(n, normalized=False, special=False) for n in numbers])
    return tokenizer


def save_toy_tokenizer(tokenizer: Any, out_dir: str | os.PathLike) -> Path:
    """Write the HF tokenizer files (tokenizer.json, tokenizer_config.json) to `out_dir`; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out
