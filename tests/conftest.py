"""Test-wide setup: CPU only, eight fake devices, rank promotion raises.

`jax_num_cpu_devices` must be set before the backend starts, so it is set here, before any test module
imports code that touches devices.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
