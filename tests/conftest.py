"""Test-wide setup: CPU only, eight fake devices, rank promotion raises, XLA's cheap compilation.

`jax_num_cpu_devices` must be set before the backend starts, so it is set here, before any test module
imports code that touches devices.

Compilation is most of the suite's time: its models are tiny, so each program runs in milliseconds but takes
0.5-3 s to compile. `XLA_FLAGS` gains flags that make XLA's CPU compiler skip its expensive LLVM passes and
fusion emitters (measured on 2 cores: two compile-bound tests 64 s -> 30 s). They change how programs are
compiled, never what they compute. Subprocesses started by tests inherit them. They are added only after a
probe process shows that this jaxlib knows them (XLA aborts the process on an unknown flag); set
`RSTAR_TEST_XLA_FLAGS=0` to test with XLA's defaults.
"""

import os
import subprocess
import sys
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_CHEAP_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def _add_cheap_compile_flags() -> None:
    """Appends `_CHEAP_COMPILE` to XLA_FLAGS once (xdist workers inherit the controller's environment)."""
    if os.environ.get("RSTAR_TEST_XLA_FLAGS", "1") != "1":
        return
    os.environ["RSTAR_TEST_XLA_FLAGS"] = "done"
    flags = " ".join([os.environ.get("XLA_FLAGS", ""), *_CHEAP_COMPILE]).strip()
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.ones(2).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode == 0:
        os.environ["XLA_FLAGS"] = flags
    else:
        warnings.warn(
            f"tests/conftest.py: this jaxlib refuses {_CHEAP_COMPILE}; testing with XLA's defaults "
            f"({probe.stderr.strip().splitlines()[-1:]})",
            stacklevel=1,
        )


_add_cheap_compile_flags()

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
