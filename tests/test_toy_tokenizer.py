"""The toy BPE tokenizer and the tiny Qwen2 policy: exact round trips, one token per tag, determinism, training
split only, the HF directory (our loaders and transformers agree), and SFT on canonical solutions learning."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers_hf import torch_logits

from rstar_jax.config import TrainConfig
from rstar_jax.models import RSTAR_SPECIAL_TOKENS, count_params, load_decoder, load_tokenizer
from rstar_jax.search.steps import build_prompt
from rstar_jax.toy import ToySpec, generate_toy_splits
from rstar_jax.toy.tiny_model import init_tiny_policy, tiny_model_config, write_tiny_model
from rstar_jax.toy.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    canonical_response,
    save_toy_tokenizer,
    toy_corpus,
    train_toy_tokenizer,
)
from rstar_jax.train import sft_examples, sft_loss, train

ERROR_STEP = (
    "<code>\n# Step 1: x\nx = zoe_9 +  7\t# odd  spacing\n<end_of_step>\n\n\n<end_of_code>\n"
    "<output>NameError: name 'zoe_9' is not defined<end_of_output>\n<answer>\\boxed{-3.5}<end_of_answer>"
)


@pytest.fixture(scope="module")
def splits():
    return generate_toy_splits(ToySpec(train_per_band=40, test_per_band=8, seed=3))


@pytest.fixture(scope="module")
def tokenizer(splits):
    return train_toy_tokenizer(splits["train"], vocab_size=768)


def _encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_decode_encode_is_exact_on_domain_text_of_both_splits(splits, tokenizer):
    texts = [build_prompt(p.question, ()) + canonical_response(p) for p in splits["train"] + splits["test"]]
    texts += [ERROR_STEP, "  leading\n\n\ntrailing  \n", "ünïcode ☃ \\frac{1}{2}"]
    for text in texts:
        ids = _encode(tokenizer, text)
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
        if text.isascii():  # each token decodes on its own to its exact text (bytes of a multibyte char do not)
            assert "".join(tokenizer.decode([i], skip_special_tokens=False) for i in ids) == text


def test_each_tag_pad_and_eos_is_one_special_token_with_fixed_ids(splits, tokenizer):
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert (tokenizer.pad_token, tokenizer.pad_token_id, tokenizer.eos_token, tokenizer.eos_token_id) == (
        PAD_TOKEN,
        0,
        EOS_TOKEN,
        1,
    )
    for tag in RSTAR_SPECIAL_TOKENS:
        assert _encode(tokenizer, tag) == [tokenizer.convert_tokens_to_ids(tag)]
        assert tokenizer.convert_tokens_to_ids(tag) in _encode(tokenizer, f"x1{tag}y 2")
    prompt_ids = _encode(tokenizer, build_prompt(splits["test"][0].question, ()))
    assert tokenizer.convert_tokens_to_ids("\n<|assistant|>") in prompt_ids  # the longest tag wins
    assert tokenizer.convert_tokens_to_ids("<|assistant|>") not in prompt_ids
    assert _encode(tokenizer, "x") == tokenizer("x")["input_ids"]  # nothing added when encoding


def _number_pieces(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in _encode(tok, text) if tok.decode([i]).strip().isdigit()]


def test_numbers_up_to_two_digits_are_one_token_and_longer_ones_split_left_to_right(splits, tokenizer, tmp_path):
    text = "total = 1234 + 56 - 7 * 105"
    assert _number_pieces(tokenizer, text) == ["12", "34", "56", "7", "10", "5"]
    digits = train_toy_tokenizer(splits["train"], vocab_size=512, number_digits=1)
    assert _number_pieces(digits, text) == list("1234567105")
    # The number tokens survive the save / reload as the Qwen2 tokenizer transformers builds for a qwen2 directory.
    save_toy_tokenizer(tokenizer, tmp_path)
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert _encode(reloaded, text) == _encode(tokenizer, text)
    with pytest.raises(ValueError, match="number_digits=4"):
        train_toy_tokenizer(splits["train"], number_digits=4)


def test_same_problems_give_byte_identical_files(splits, tokenizer, tmp_path):
    save_toy_tokenizer(tokenizer, tmp_path / "a")
    save_toy_tokenizer(train_toy_tokenizer(splits["train"], vocab_size=768), tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    save_toy_tokenizer(train_toy_tokenizer(splits["train"][1:], vocab_size=768), tmp_path / "c")
    assert (tmp_path / "c" / "tokenizer.json").read_bytes() != (tmp_path / "a" / "tokenizer.json").read_bytes()


def test_trained_on_the_given_training_problems_only(splits, tokenizer):
    with pytest.raises(ValueError, match="training split only"):
        train_toy_tokenizer(splits["train"] + splits["test"][:1])
    corpus = toy_corpus(splits["train"])
    assert corpus[0::2] == [build_prompt(p.question, ()) for p in splits["train"]]
    assert corpus[1::2] == [canonical_response(p) for p in splits["train"]]
    # The vocabulary comes from the given problems alone: drop every problem mentioning a word of a test question,
    # and that word is no longer one token.
    vocab = tokenizer.get_vocab()
    word = next(w for w in splits["test"][0].question.split() if w.isalpha() and len(w) > 4 and f"Ġ{w}" in vocab)
    without = [p for p in splits["train"] if word not in build_prompt(p.question, ()) + canonical_response(p)]
    assert 0 < len(without) < len(splits["train"])
    assert f"Ġ{word}" not in train_toy_tokenizer(without, vocab_size=768).get_vocab()


def test_hf_directory_loads_with_our_loaders_and_transformers(splits, tokenizer, tmp_path):
    config = tiny_model_config(len(tokenizer), hidden=64, layers=2, heads=2, kv_heads=1, intermediate=96)
    policy = init_tiny_policy(config, seed=1)
    rng = np.random.default_rng(0)  # perturb every weight (norms and biases included) so that all of them matter
    graphdef, state = nnx.split(policy)
    pure = jax.tree.map(lambda v: v + 0.2 * rng.standard_normal(v.shape, np.float32), nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    policy = nnx.merge(graphdef, state)
    write_tiny_model(tmp_path, tokenizer, config, seed=1, model=policy)

    ours = load_decoder(tmp_path)
    assert ours.config == config and count_params(ours) == count_params(policy)
    loaded = load_tokenizer(tmp_path, ours.config)
    assert isinstance(loaded, transformers.Qwen2Tokenizer)  # what transformers 5 makes of any qwen2 directory
    text = build_prompt(splits["test"][1].question, ()) + canonical_response(splits["test"][1])
    assert _encode(loaded, text) == _encode(tokenizer, text)

    ids = np.asarray([_encode(loaded, text)[:48]], np.int32)
    mask, positions = np.ones_like(ids, bool), np.arange(ids.shape[1], dtype=np.int32)[None]
    logits, _ = ours(ids, positions, mask)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    reference = torch_logits(hf, ids, mask, positions)
    assert np.abs(reference).max() > 1.0  # not a near-zero comparison
    np.testing.assert_allclose(np.asarray(logits), reference, atol=1e-4, rtol=0)


def test_tiny_config_and_init(tokenizer):
    config = tiny_model_config(len(tokenizer))
    assert (config.model_type, config.head_dim, config.tie_word_embeddings, config.qkv_bias) == (
        "qwen2",
        64,
        True,
        True,
    )
    a, b, c = (nnx.to_pure_dict(nnx.state(init_tiny_policy(config, s))) for s in (0, 0, 1))
    np.testing.assert_array_equal(a["trunk"]["embed"], b["trunk"]["embed"])
    assert not np.array_equal(a["trunk"]["embed"], c["trunk"]["embed"])
    with pytest.raises(ValueError, match="kv_heads"):
        tiny_model_config(512, hidden=128, heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="entries"):
        write_tiny_model("unused", tokenizer, tiny_model_config(len(tokenizer) - 1), seed=0)


def _unigram_loss(train_ex, held_ex) -> float:
    """Cross-entropy (nats) of held-out response tokens under the training responses' add-one unigram."""
    vocab = int(max(train_ex.arrays["tokens"].max(), held_ex.arrays["tokens"].max())) + 1
    fit_tokens = train_ex.arrays["tokens"][:, 1:][train_ex.arrays["loss_mask"][:, 1:]]
    probs = (np.bincount(fit_tokens, minlength=vocab) + 1.0) / (fit_tokens.size + vocab)
    held_tokens = held_ex.arrays["tokens"][:, 1:][held_ex.arrays["loss_mask"][:, 1:]]
    return float(-np.log(probs[held_tokens]).mean())


@pytest.mark.slow
@pytest.mark.optimized  # 120 training steps: compute-bound
def test_sft_on_canonical_solutions_beats_untrained_and_unigram_on_held_out_problems(tmp_path):
    splits = generate_toy_splits(ToySpec(train_per_band=48, test_per_band=8, seed=5, bands=("gsm",)))
    tok = train_toy_tokenizer(splits["train"], vocab_size=512)
    records = [{"query": p.question, "response": canonical_response(p), "id": p.id} for p in splits["train"]]
    held_records = [{"query": p.question, "response": canonical_response(p), "id": p.id} for p in splits["test"]]
    fit = sft_examples(records, lambda t: _encode(tok, t), tok.eos_token_id, 224)
    held = sft_examples(held_records, lambda t: _encode(tok, t), tok.eos_token_id, 224)
    config = tiny_model_config(len(tok), hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128)
    cfg = TrainConfig(steps=120, batch_size=8, max_length=224, learning_rate=5e-3, warmup_steps=10, decay="cosine",
                      weight_decay=0.0, compute_dtype="float32", save_every=10**6, log_every=120)  # fmt: skip
    policy = init_tiny_policy(config, seed=0)
    untrained = float(sft_loss(policy, {k: v[:8] for k, v in held.arrays.items()})[0])
    _, final = train(policy, sft_loss, fit, cfg=cfg, workdir=tmp_path, eval_examples=held)
    unigram = _unigram_loss(fit, held)
    assert untrained > 0.9 * np.log(len(tok))  # a fresh model knows nothing
    print(final["eval_loss"], unigram, untrained)
    assert final["eval_loss"] < 0.5 * unigram < untrained, (final["eval_loss"], unigram, untrained)
