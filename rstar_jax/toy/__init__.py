"""The embedded toy domain: seeded multi-step arithmetic word problems with their intended computation.

`ToyTeacher` (the scripted bootstrap policy, `rstar_jax.toy.teacher`) is imported on first access: it needs
`rstar_jax.search`, and so jax, which the generator does not.
"""

from typing import Any

from rstar_jax.toy.generator import BAND_RULES, BANDS, BandRule, generate_problem, generate_problems
from rstar_jax.toy.splits import ToySpec, generate_toy_splits
from rstar_jax.toy.stats import length_stats, steps_text
from rstar_jax.toy.story import MAX_VALUE

__all__ = [
    "BANDS",
    "BAND_RULES",
    "MAX_VALUE",
    "BandRule",
    "ToySpec",
    "ToyTeacher",
    "generate_problem",
    "generate_problems",
    "generate_toy_splits",
    "length_stats",
    "steps_text",
]


def __getattr__(name: str) -> Any:
    """Lazy export of `ToyTeacher` (PEP 562)."""
    if name == "ToyTeacher":
        from rstar_jax.toy.teacher import ToyTeacher

        return ToyTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
