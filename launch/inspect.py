"""Print what a checkpoint holds, without the model code.

    python -m launch.inspect --ckpt=DIR [--step=N] [--noopt_state]

Prints the committed steps, every parameter array (path, shape, dtype, sharding as saved), the parameter count,
the optimizer-state arrays and the stored config and extra JSON. Reads metadata only, never array data.
Exit status 1 with a one-line message when DIR has no committed checkpoint (or not the requested step).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from collections.abc import Sequence

from absl import app, flags, logging

from rstar_jax.checkpoint import CheckpointNotFoundError, describe

_CKPT = flags.DEFINE_string("ckpt", None, "Checkpoint directory (the one given to Checkpointer).", required=True)
_STEP = flags.DEFINE_integer("step", None, "Step to describe; default: the latest committed step.")
_OPT_STATE = flags.DEFINE_bool("opt_state", True, "Also list the optimizer-state arrays.")


def _quiet_orbax(record: std_logging.LogRecord) -> bool:
    """Drops orbax's routine read-only-mode warnings; keeps its errors and everything else."""
    return record.levelno >= std_logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(_quiet_orbax)
    try:
        text = describe(_CKPT.value, _STEP.value, opt_state=_OPT_STATE.value)
    except CheckpointNotFoundError as err:
        print(f"launch.inspect: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    app.run(main)
