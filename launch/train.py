"""python -m launch.train --config=configs/tiny.py --kind=sft --data=sft.json --model=HF_DIR --out=OUT_DIR

Trains one model of a round from extracted data (`rstar_jax.extract`) with the shared loop (`config.sft` for
sft, `config.ppm` for the others):

  * sft: the policy on `[{query, response, id}]`;
  * ppm: a PPM initialised from `--model` (the round's policy) with a fresh value head, on
    `[{prompt, pos, neg, pos_count, neg_count, id}]`, Bradley–Terry with 1/(n⁺·n⁻) weights;
  * orm: the same loss on whole-trajectory pairs (`extract.orm_pairs`);
  * pqm: the value head regressed on Q (`[{text, q, id}]`, `extract.pqm_values`).

The model trains on the config's `mesh` (default one device; e.g. `--config.mesh.fsdp=-1` shards over all).
Checkpoints, metrics.jsonl and TensorBoard events go to `<config.workdir>/train_<kind>`; a rerun resumes there with
the same training settings (only `steps` / `epochs` may grow, and `remat` change: a rerun with more steps continues
a finished run; any other change is refused naming the keys).
The result is exported as an HF directory to `--out` (`*ForCausalLM` for sft, `*ForSequenceClassification`
otherwise). The log goes to `<config.workdir>/logs/train.log`. The data file (every record against the kind's
fields: the record's index and field are named), the model directory (config.json, safetensors headers) and `--out`
(a directory or absent, never a file; its parent writable) are checked, and the workdir's lock taken, before any
work; a bad input or a diverging run ends with one line `error: ...` and exit status 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import flags, logging

from rstar_jax import cli, devices, models
from rstar_jax.train import Kind, NonFiniteError, RecordError, check_records, fit
from rstar_jax.workdir import WorkdirLock, check_output_dir, setup_logging

_CONFIG = cli.define_config_flag()
_KIND = flags.DEFINE_enum_class("kind", None, Kind, "what to train")
_DATA = flags.DEFINE_string("data", None, "JSON list of training records (see the module docstring)")
_MODEL = flags.DEFINE_string("model", None, "HF directory of the initial policy")
_OUT = flags.DEFINE_string("out", None, "HF directory to write the trained model to")


def _records(path: str, kind: Kind) -> list[Any]:
    """The records of `--data`, each checked against `kind`'s fields (the file, record index and field named)."""
    if not Path(path).is_file():
        raise cli.UsageExit(f"--data={path}: no such file")
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise cli.UsageExit(f"--data={path}: not valid JSON ({err})") from None
    try:
        check_records(kind.value, records, f"--data={path}")
    except RecordError as err:
        raise cli.UsageExit(str(err)) from None
    return records


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{f.name}" for f in (_KIND, _DATA, _MODEL, _OUT) if f.value is None]
    if missing:
        raise cli.UsageExit(f"missing required flags: {', '.join(missing)}")
    cfg = cli.parsed_config(_CONFIG)
    devices.initialize(cfg.distributed)  # before any device use; a no-op for one process
    kind = _KIND.value
    records = _records(_DATA.value, kind)
    check_output_dir(_OUT.value, f"--out={_OUT.value}")  # before any work: training first would waste it
    try:
        models.load_config(_MODEL.value)
        models.check_weight_headers(_MODEL.value)  # an empty or corrupt safetensors file, before any work
    except ValueError as err:
        raise cli.UsageExit(f"--model={_MODEL.value}: {err}") from None
    section = "sft" if kind is Kind.SFT else "ppm"
    with WorkdirLock(cfg.workdir):
        setup_logging(Path(cfg.workdir).expanduser() / "logs", "train")
        try:
            summary = fit(
                kind,
                records,
                init_dir=_MODEL.value,
                out_dir=_OUT.value,
                cfg=cfg.sft if kind is Kind.SFT else cfg.ppm,
                workdir=os.path.join(cfg.workdir, f"train_{kind.value}"),
                mesh=devices.run_mesh(cfg.mesh),
            )
        except FloatingPointError as err:  # train.NonFiniteError, or checkpoint.NonFiniteSaveError
            raise NonFiniteError(
                f"launch.train {kind.value} diverged: {err}; lower config.{section}.learning_rate"
            ) from err
    logging.info("launch.train %s: final %s", kind.value, summary)
    print(json.dumps({"kind": kind.value, "out": _OUT.value, **summary}))


if __name__ == "__main__":
    cli.run(main)
