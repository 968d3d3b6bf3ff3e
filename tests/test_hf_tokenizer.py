"""Tokenizer from the model directory, rStar special tokens added once, embeddings fitted to the tokenizer."""

import json

import numpy as np
import pytest
import transformers
from helpers_hf import make_hf_model, write_bpe_tokenizer, write_sentencepiece_tokenizer

from rstar_jax.models import (
    RSTAR_SPECIAL_TOKENS,
    TokenizerError,
    add_rstar_tokens,
    fit_embeddings,
    load_config,
    load_decoder,
    load_tokenizer,
    save_decoder,
)


def test_special_tokens_are_added_once_in_reference_order(tmp_path):
    write_bpe_tokenizer(tmp_path, vocab_size=64)
    tokenizer = load_tokenizer(tmp_path)
    before = len(tokenizer)
    assert add_rstar_tokens(tokenizer) == len(RSTAR_SPECIAL_TOKENS) == 15
    assert add_rstar_tokens(tokenizer) == 0
    assert len(tokenizer) == before + 15
    ids = tokenizer.convert_tokens_to_ids(list(RSTAR_SPECIAL_TOKENS))
    assert ids == list(range(before, before + 15))
    encoded = tokenizer("x<|user|>:\nQ\n<|assistant|>: <code>", add_special_tokens=False).input_ids
    assert tokenizer.convert_tokens_to_ids("\n<|assistant|>") in encoded
    assert tokenizer.convert_tokens_to_ids("<code>") in encoded


def test_padded_embedding_rows_are_kept(tmp_path):
    """Like Qwen2.5 (151,665 tokens, 151,936 rows): the tokenizer fits, so nothing is resized or shrunk."""
    make_hf_model("qwen2", tmp_path)  # 96 rows
    write_bpe_tokenizer(tmp_path, vocab_size=64)
    model = load_decoder(tmp_path)
    tokenizer = load_tokenizer(tmp_path, model.config)
    add_rstar_tokens(tokenizer)
    assert len(tokenizer) < model.config.vocab_size
    assert fit_embeddings(model, len(tokenizer)) is model


def test_new_rows_are_the_mean_of_existing_rows(tmp_path):
    make_hf_model("llama", tmp_path, vocab_size=70)  # untied LM head
    write_sentencepiece_tokenizer(tmp_path, vocab_size=60)
    model = load_decoder(tmp_path)
    tokenizer = load_tokenizer(tmp_path, model.config)
    add_rstar_tokens(tokenizer)
    grown = fit_embeddings(model, len(tokenizer))
    assert grown.config.vocab_size == len(tokenizer) == 75
    old_embed, new_embed = np.asarray(model.trunk.embed[...]), np.asarray(grown.trunk.embed[...])
    old_head, new_head = np.asarray(model.lm_head[...]), np.asarray(grown.lm_head[...])
    assert new_embed.shape == (75, 32) and new_head.shape == (32, 75)
    np.testing.assert_array_equal(new_embed[:70], old_embed)
    np.testing.assert_array_equal(new_head[:, :70], old_head)
    np.testing.assert_allclose(new_embed[70:], np.broadcast_to(old_embed.mean(0), (5, 32)), atol=1e-8)
    np.testing.assert_allclose(new_head[:, 70:], np.broadcast_to(old_head.mean(1)[:, None], (32, 5)), atol=1e-8)
    save_decoder(grown, tmp_path / "out", tokenizer=tokenizer)
    assert load_config(tmp_path / "out").vocab_size == 75
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert reloaded.convert_tokens_to_ids(list(RSTAR_SPECIAL_TOKENS)) == list(range(60, 75))


def test_tokenizer_longer_than_embedding_names_both_files(tmp_path):
    make_hf_model("qwen2", tmp_path, vocab_size=50)
    write_bpe_tokenizer(tmp_path, vocab_size=64)
    with pytest.raises(
        TokenizerError,
        match=r"tokenizer\.json: tokenizer has 64 entries but .*config\.json has "
        r"vocab_size=50",
    ):
        load_tokenizer(tmp_path, load_config(tmp_path))


def test_missing_tokenizer_names_the_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(TokenizerError, match="no tokenizer file"):
        load_tokenizer(tmp_path)
