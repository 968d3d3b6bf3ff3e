"""python -m launch.export --ckpt=DIR --out=DIR [--step=N]

Exports a training run's orbax checkpoint as a Hugging Face directory (`rstar_jax/train/export.py`): a policy SFT
run as `*ForCausalLM`, a PPM run as `*ForSequenceClassification` whose served score is pre-tanh (rstar_jax applies
the tanh; the export's README.md and config say so). `--ckpt` is a round's stage directory (`round_<r>/sft`,
`round_<r>/ppm`), its `run/`, its `run/checkpoints`, or a `launch.train` workdir's `train_<kind>`; the default step
is the latest. A directory without checkpoints, a step that was not saved, a run without its tokenizer or model
config ends with one line `error: ...` naming the directory or step, and exit status 2.
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import flags, logging

from rstar_jax import cli

_CKPT = flags.DEFINE_string("ckpt", None, "training run: stage dir, run/ or run/checkpoints", required=True)
_OUT = flags.DEFINE_string("out", None, "HF directory to write (replaced if it exists)", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step to export; default: the latest")


def _quiet_orbax(record: std_logging.LogRecord) -> bool:
    """Drops orbax's own log lines (its read-only-mode warning, the errors behind a message of ours)."""
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS.verbose:
        logging.get_absl_handler().addFilter(_quiet_orbax)
    from rstar_jax.train.export import export_run
    from rstar_jax.workdir import check_output_dir

    check_output_dir(_OUT.value, f"--out={_OUT.value}")  # a file there is refused, never replaced

    done = export_run(_CKPT.value, _OUT.value, _STEP.value)
    kind = "PPM (*ForSequenceClassification, pre-tanh score)" if done.head == "value" else "policy (*ForCausalLM)"
    print(f"wrote {done.out}: {kind} from step {done.step}")


if __name__ == "__main__":
    cli.run(main)
