"""python -m launch.convert --gguf=FILE --out=DIR

Converts a GGUF checkpoint (llama.cpp's format, any quantisation transformers dequantises) into a plain Hugging
Face directory: `config.json`, fp32 `model.safetensors` and the tokenizer (`rstar_jax/models/gguf.py`). The
directory loads with `rstar_jax.models.load_decoder` and with transformers' `AutoModelForCausalLM`, and can be
`config.model.base` of a run. A missing or unreadable file, an architecture other than llama / qwen2 / phi3, or a
tokenizer larger than the embedding ends with one line `error: ...` naming the file, and exit status 2.
"""

from __future__ import annotations

import contextlib
import io

from absl import flags

from rstar_jax import cli

_GGUF = flags.DEFINE_string("gguf", None, "GGUF file to convert", required=True)
_OUT = flags.DEFINE_string("out", None, "HF directory to write (replaced if it exists)", required=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    from rstar_jax.workdir import check_output_dir

    check_output_dir(_OUT.value, f"--out={_OUT.value}")  # a file there is refused, never replaced
    import transformers

    from rstar_jax import models
    from rstar_jax.models.gguf import convert_gguf

    transformers.utils.logging.disable_progress_bar()
    # transformers' GGUF dequantisation draws a tqdm bar of its own on stderr; the console stays quiet
    with contextlib.redirect_stderr(io.StringIO()):
        config = convert_gguf(_GGUF.value, _OUT.value)
    params = models.count_params(models.abstract_decoder(config)) / 1e6
    print(f"wrote {_OUT.value}: {config.model_type}, {config.num_layers} layers, {params:.1f}M parameters")


if __name__ == "__main__":
    cli.run(main)
