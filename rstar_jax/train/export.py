"""A training run's orbax checkpoint -> an HF directory: the policy (`*ForCausalLM`) or the PPM
(`*ForSequenceClassification`), as `fit` exports them at the end of training.

    export_run("workdir/tiny/round_1/sft", "out/policy")    # a round's stage dir, its run/ or run/checkpoints
    export_run("workdir/tiny/round_1/ppm/run", "out/ppm", step=2)

A run is self-describing: every checkpoint step stores the model's HF config and whether it is a policy or a PPM
(`checkpoint_config`, written by `train.loop`), and `fit` saves the run's tokenizer (the base tokenizer plus the
rStar tokens) in `<run>/tokenizer`. The fp32 master parameters are restored on the host and written by
`models.save_decoder` / `models.save_ppm` (`models.hf_io`, the one HF writer). A PPM export serves the pre-tanh
score: transformers returns `w · h_last` as its logits, and rstar_jax applies the tanh (its config's
`rstar_value_head` and README.md say so).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from rstar_jax import models
from rstar_jax.checkpoint import Checkpointer, CheckpointNotFoundError

__all__ = ["MODEL_KEY", "TOKENIZER_DIR", "ExportedRun", "checkpoint_config", "export_run", "find_checkpoints"]

MODEL_KEY = "model"  # the checkpoint config entry: {"hf_config": {...}, "head": "lm" | "value"}
TOKENIZER_DIR = "tokenizer"


def checkpoint_config(model: Any) -> dict[str, Any]:
    """What a checkpoint must record to be exported without the code that trained it: the HF config and the head."""
    head = "value" if isinstance(model, models.PPM) else "lm"
    return {MODEL_KEY: {"hf_config": model.config.to_hf_dict(), "head": head}}


def find_checkpoints(path: str | os.PathLike) -> Path:
    """The orbax directory of a run given as a round's stage dir (`sft/`, `ppm/`), its `run/`, or `run/checkpoints`."""
    path = Path(path)
    for candidate in (path, path / "checkpoints", path / "run" / "checkpoints"):
        if candidate.is_dir() and any(p.name.isdigit() for p in candidate.iterdir()):
            return candidate
    raise CheckpointNotFoundError(
        f"{path}: no committed checkpoint steps here, in {path / 'checkpoints'} or in {path / 'run' / 'checkpoints'}"
    )


@dataclasses.dataclass(frozen=True)
class ExportedRun:
    """What `export_run` wrote: the HF directory, the step exported, and `lm` (policy) or `value` (PPM)."""

    out: Path
    step: int
    head: str


def export_run(path: str | os.PathLike, out_dir: str | os.PathLike, step: int | None = None) -> ExportedRun:
    """Writes the model of checkpoint `step` (default: the latest) of the run at `path` to `out_dir` (HF directory)."""
    ckpt_dir = find_checkpoints(path)
    run_dir = ckpt_dir.parent
    tokenizer_dir = run_dir / TOKENIZER_DIR
    with Checkpointer(ckpt_dir, read_only=True) as ckpt:
        step = ckpt.latest_step() if step is None else step
        stored = (ckpt.restore_config(step) or {}).get(MODEL_KEY)
        if stored is None:
            raise CheckpointNotFoundError(
                f"{ckpt_dir}: step {step} records no model config (a run from before checkpoints stored one); "
                "its stage's exported HF directory (policy/ or model/) holds the final model"
            )
        config = models.ModelConfig.from_hf_dict(stored["hf_config"], f"{ckpt_dir}/{step} (config)")
        config = config.replace(param_dtype="float32")  # the fp32 master copy is what the checkpoint holds
        cls = models.PPM if stored["head"] == "value" else models.Decoder
        abstract = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0)))))
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
        restored = ckpt.restore(step, params_target=target)
    tokenizer = models.load_tokenizer(tokenizer_dir, config)  # names the directory when it is missing
    model = models.build_from_arrays(cls, config, jax.device_get(restored.params))
    if cls is models.PPM:
        models.save_ppm(model, out_dir, tokenizer=tokenizer)
    else:
        models.save_decoder(model, out_dir, tokenizer=tokenizer)
    return ExportedRun(Path(out_dir), restored.step, stored["head"])
