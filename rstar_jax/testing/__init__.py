"""Deterministic stub policies, PPMs, executors and graders for tests and benchmarks (never for real runs)."""

from rstar_jax.testing.stubs import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy, ScriptedToyPolicy, stop_step

__all__ = ["BoxGrader", "FakeExecutor", "HashPPM", "RandomStepPolicy", "ScriptedToyPolicy", "stop_step"]
