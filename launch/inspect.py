"""Print what a checkpoint holds, without the model code.

    python -m launch.inspect --ckpt=DIR [--step=N] [--noopt_state]

Prints the committed steps, every parameter array (path, shape, dtype, sharding as saved), the parameter count,
the optimizer-state arrays and the stored config and extra JSON. Reads metadata only, never array data.
A missing directory, a directory without committed steps (pointed at a training run's `run/`, it names the
`run/checkpoints` that holds them), a missing step or unreadable metadata end with one line `error: ...` naming
the directory, step or file, and exit status 2 (`--verbose` adds the traceback).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from collections.abc import Sequence

from absl import flags, logging

from rstar_jax import cli
from rstar_jax.checkpoint import describe

_CKPT = flags.DEFINE_string("ckpt", None, "Checkpoint directory (the one given to Checkpointer).", required=True)
_STEP = flags.DEFINE_integer("step", None, "Step to describe; default: the latest committed step.")
_OPT_STATE = flags.DEFINE_bool("opt_state", True, "Also list the optimizer-state arrays.")


def _quiet_orbax(record: std_logging.LogRecord) -> bool:
    """Drops orbax's own log lines (read-only-mode warnings, the errors behind a message of ours)."""
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    if not flags.FLAGS.verbose:
        logging.get_absl_handler().addFilter(_quiet_orbax)
    sys.stdout.write(describe(_CKPT.value, _STEP.value, opt_state=_OPT_STATE.value))
    return 0


if __name__ == "__main__":
    cli.run(main)
