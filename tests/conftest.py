"""Test-wide setup: CPU only, eight fake devices, rank promotion raises, cheap compilation.

`jax_num_cpu_devices` must be set before the backend starts, so it is set here, before any test module
imports code that touches devices.

Compilation is most of the suite's time: its models are tiny, so each program runs in milliseconds but takes
0.5-3 s to compile. Two settings make compiling cheaper; they change how programs are compiled, not which
operations run (rounding may differ in the last bits), and subprocesses started by tests inherit them through the
environment:
- `JAX_DISABLE_MOST_OPTIMIZATIONS=1` (JAX's own switch, the one JAX's test suite uses: XLA's backend at -O0,
  no expensive LLVM passes). Compute-bound tests, where the unoptimised code costs more than it saves, switch it
  off for their duration (`_optimized_when_compute_bound`): those marked `real_weights` (a 135M-parameter model)
  or `optimized` (e.g. 120 training steps: 54 s cheap, 41 s optimised).
- `XLA_FLAGS` gains `--xla_cpu_use_fusion_emitters=false` (`rstar_jax.xla_env`, as the launchers do), added only
  after a probe process shows that this jaxlib knows it (XLA aborts a process on an unknown flag).
Measured on 2 cores: two compile-bound tests 64 s -> 30 s; the suite 1705 s -> 1262 s.
Set `RSTAR_TEST_CHEAP_COMPILE=0` to test with the defaults.
"""

import os
import warnings

import pytest

from rstar_jax import xla_env

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _cheap_compile() -> None:
    """Sets the environment once (xdist workers inherit the controller's environment)."""
    if os.environ.get("RSTAR_TEST_CHEAP_COMPILE", "1") != "1":
        return
    os.environ["RSTAR_TEST_CHEAP_COMPILE"] = "set"
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    if not xla_env.use_cheap_cpu_codegen():  # the launchers' own setting: a probe process, answer cached per jaxlib
        warnings.warn(f"tests/conftest.py: not using {xla_env.CHEAP_CPU_CODEGEN} (see XLA_FLAGS)", stacklevel=1)


_cheap_compile()

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
    """Modules with a `slow` test run first, each module's tests together (module fixtures are built once). With
    `pytest -n 2 --dist worksteal` (`make test`) the long tests then start early, one worker takes the short ones
    from the other's queue meanwhile, and the two finish together instead of one waiting for a long test started
    last. The order within the two groups is the collection order."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(autouse=True)
def _optimized_when_compute_bound(request):
    """Full XLA optimisation for the duration of a `real_weights` or `optimized` test (the module docstring)."""
    cheap = jax.config.values.get("jax_disable_most_optimizations", False)
    marked = any(request.node.get_closest_marker(m) is not None for m in ("real_weights", "optimized"))
    if not marked or not cheap:
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)
