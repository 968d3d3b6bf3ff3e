"""GGUF import (`rstar_jax.models.gguf`, `launch.convert`) on tiny GGUF files written here: the converted HF
directory holds exactly what transformers' GGUF loader reads, and bad files are refused naming the file."""

import numpy as np
import pytest
import torch
import transformers
from helpers_gguf import tiny_tokens, write_tiny_gguf
from helpers_launch import assert_refused, launch

from rstar_jax import models
from rstar_jax.models.gguf import convert_gguf, gguf_architecture

pytest.importorskip("gguf", reason="GGUF import needs the `gguf` package (test extra)")


def _gguf_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()


def test_converted_directory_matches_the_gguf_for_transformers_and_for_us(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "hf"
    config = convert_gguf(gguf_path, out)
    assert (config.model_type, config.num_layers, config.vocab_size) == ("llama", 1, len(tiny_tokens()))
    text = "ab a b<|im_end|>"
    tok_gguf = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=gguf_path.name)
    tok_hf = transformers.AutoTokenizer.from_pretrained(str(out))
    ids = tok_gguf(text)["input_ids"]
    assert tok_hf(text)["input_ids"] == ids == [30, 31, 29, 4, 2]
    tokens = torch.tensor([ids])
    with torch.no_grad():
        ref = _gguf_model(gguf_path)(input_ids=tokens).logits.numpy()
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
        np.testing.assert_array_equal(hf(input_ids=tokens).logits.numpy(), ref)
    decoder = models.load_decoder(out)
    positions = np.arange(len(ids), dtype=np.int32)[None]
    ours, _ = decoder(np.asarray([ids], np.int32), positions, np.ones((1, len(ids)), bool))
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-5, rtol=1e-5)


def test_bad_gguf_files_are_named(tmp_path):
    missing = tmp_path / "none.gguf"
    with pytest.raises(FileNotFoundError, match="none.gguf"):
        gguf_architecture(missing)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(models.WeightsError, match="junk.gguf"):
        convert_gguf(junk, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_convert_refuses_another_architecture_and_a_tokenizer_larger_than_the_embedding(tmp_path):
    gpt2 = write_tiny_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    assert_refused(launch("convert", f"--gguf={gpt2}", f"--out={tmp_path / 'a'}"), str(gpt2), "'gpt2'", "llama")
    small = write_tiny_gguf(tmp_path / "small_embed.gguf", embedding_rows=20)
    line = assert_refused(launch("convert", f"--gguf={small}", f"--out={tmp_path / 'b'}"), str(small))
    assert "32 entries" in line and "vocab_size=20" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("data", [b"GGUF", b"GGUF" + b"\x03\x00\x00\x00", b""], ids=["magic_only", "version", "empty"])
def test_a_truncated_gguf_header_is_named_not_a_traceback(tmp_path, data):
    stub = tmp_path / "stub.gguf"
    stub.write_bytes(data)
    with pytest.raises(models.WeightsError, match=r"stub\.gguf: not a readable GGUF file"):
        gguf_architecture(stub)
    assert_refused(launch("convert", f"--gguf={stub}", f"--out={tmp_path / 'out'}"), str(stub), "not a readable GGUF")
    assert not (tmp_path / "out").exists()


def test_convert_refuses_an_out_that_is_a_file_and_keeps_it(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    assert_refused(launch("convert", f"--gguf={gguf_path}", f"--out={out}"), f"--out={out}", "not a directory")
    assert out.read_text() == "keep me"
    with pytest.raises(NotADirectoryError, match="out.txt"):  # the HF writer itself never replaces a file either
        convert_gguf(gguf_path, out)
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "tiny.gguf"]
