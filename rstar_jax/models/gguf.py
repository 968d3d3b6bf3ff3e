"""Import a GGUF checkpoint (llama.cpp's format) as a plain Hugging Face directory.

    from rstar_jax.models.gguf import convert_gguf
    convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")   # config.json, model.safetensors, tokenizer

transformers' GGUF loader (packages `gguf` and `accelerate`) reads the metadata into an HF config, dequantises
the tensors to fp32 and rebuilds the tokenizer (special tokens and chat template included). transformers refuses
`save_pretrained` on a model it loaded from GGUF, so the model is rebuilt here from that config and the state
dict: the config is parsed by `ModelConfig.from_hf_dict`, the tensors checked and laid out by `hf_io`, and the
directory written by `hf_io.save_decoder`, the one HF writer, so our loader and transformers both read it.

Errors name the GGUF file: not a GGUF file, an architecture rstar_jax does not implement (checked from the
metadata before any tensor is read), a config it cannot reproduce, a tokenizer larger than the embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rstar_jax.models.config import ConfigError, ModelConfig
from rstar_jax.models.decoder import Decoder
from rstar_jax.models.hf_io import WeightsError, decoder_from_tensors, save_decoder
from rstar_jax.models.tokenizer import check_fits

# GGUF `general.architecture` -> our `model_type` (llama.cpp writes Mistral checkpoints as "llama" too).
GGUF_ARCHITECTURES: dict[str, str] = {"llama": "llama", "qwen2": "qwen2", "phi3": "phi3"}


def gguf_architecture(path: str | Path) -> str:
    """The `general.architecture` of a GGUF file (metadata only, memory-mapped); errors name the file."""
    try:
        from gguf import GGUFReader
    except ImportError as err:
        raise ImportError(
            "reading GGUF files needs the `gguf` and `accelerate` packages: pip install gguf accelerate"
        ) from err

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    try:
        fields = GGUFReader(path).fields
    except Exception as err:  # noqa: BLE001 - the reader fails in many ways (IndexError, struct...) on a bad file
        raise WeightsError(f"{path}: not a readable GGUF file ({type(err).__name__}: {err})") from None
    if "general.architecture" not in fields:
        raise WeightsError(f"{path}: GGUF metadata has no 'general.architecture'")
    field = fields["general.architecture"]
    try:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (IndexError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: GGUF metadata 'general.architecture' is unreadable ({err})") from None


def read_gguf(path: str | Path) -> tuple[Decoder, Any]:
    """A GGUF file -> (our fp32 `Decoder`, its HF tokenizer), through transformers' GGUF loader."""
    import torch
    import transformers

    path = Path(path)
    arch = gguf_architecture(path)
    if arch not in GGUF_ARCHITECTURES:
        raise ConfigError(
            f"{path}: GGUF architecture {arch!r} is not supported; rstar_jax converts "
            f"{', '.join(sorted(GGUF_ARCHITECTURES))}"
        )
    where, name = str(path.parent), path.name
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    raw = hf_model.config.to_dict()
    raw.pop("quantization_config", None)
    config = ModelConfig.from_hf_dict(raw, source=f"{path} (GGUF metadata)")
    if config.model_type != GGUF_ARCHITECTURES[arch]:
        raise ConfigError(f"{path}: GGUF architecture {arch!r} loaded as model_type {config.model_type!r}")
    tensors = {k: v.detach().cpu().numpy() for k, v in hf_model.state_dict().items()}
    del hf_model
    tokenizer = transformers.AutoTokenizer.from_pretrained(where, gguf_file=name)
    check_fits(tokenizer, config, path, f"{path} (GGUF metadata)")
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)  # the tied head is the embedding itself
    return decoder_from_tensors(config, tensors, path), tokenizer


def convert_gguf(path: str | Path, out_dir: str | Path) -> ModelConfig:
    """Write the GGUF checkpoint `path` as an HF directory `out_dir` (fp32 safetensors, config, tokenizer)."""
    decoder, tokenizer = read_gguf(path)
    save_decoder(decoder, out_dir, tokenizer=tokenizer)
    return decoder.config


__all__ = ["GGUF_ARCHITECTURES", "convert_gguf", "gguf_architecture", "read_gguf"]
