"""The embedded toy domain: seeded multi-step arithmetic word problems with their intended computation."""

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
    "generate_problem",
    "generate_problems",
    "generate_toy_splits",
    "length_stats",
    "steps_text",
]
