"""The enumerated choices of the config tree (`rstar_jax.config` re-exports them) and its error type."""

import enum

__all__ = [
    "SCRATCH_BASE",
    "BudgetAxis",
    "ConfigError",
    "DType",
    "Decay",
    "EvalMethod",
    "RewardKind",
    "SftInit",
    "ToyBand",
    "UnvisitedRule",
]


SCRATCH_BASE = "scratch"
"""`model.base` value for the toy's from-scratch tiny decoder (instead of the committed toy base)."""


class ConfigError(ValueError):
    """A config value is missing, misspelt, of the wrong type or out of range."""


class UnvisitedRule(enum.StrEnum):
    """UCT score of an unvisited child: `zero` (reference rStar, default) or `inf` (classic UCT)."""

    ZERO = "zero"
    INF = "inf"


class SftInit(enum.StrEnum):
    """Where a round's policy SFT starts: `base` (the paper: the base model every round) or `previous` (the
    previous round's policy; round 1 starts from the base either way)."""

    BASE = "base"
    PREVIOUS = "previous"


class Decay(enum.StrEnum):
    """Learning-rate decay after warmup, to 0 at the last step."""

    LINEAR = "linear"
    COSINE = "cosine"


class DType(enum.StrEnum):
    """Floating-point dtype of parameters or activations."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


class EvalMethod(enum.StrEnum):
    """Test-time methods of `launch.evaluate` (each one function of `rstar_jax.search.baselines`)."""

    GREEDY = "greedy"
    MAJORITY = "majority"
    BEST_OF_N = "best_of_n"
    WEIGHTED_VOTE = "weighted_vote"
    BEAM = "beam"
    MCTS = "mcts"
    PROTOCOL = "protocol"


class BudgetAxis(enum.StrEnum):
    """x-axis of the accuracy-vs-budget curves: mean trajectories, generated tokens or FLOPs per problem."""

    TRAJECTORIES = "trajectories"
    TOKENS = "tokens"
    FLOPS = "flops"


class RewardKind(enum.StrEnum):
    """What the reward model guiding a test-time method was trained as (a label: all score texts alike)."""

    PPM = "ppm"
    ORM = "orm"
    PQM = "pqm"


class ToyBand(enum.StrEnum):
    """Difficulty bands of the toy domain, mirroring the paper's GSM / MATH / Olympiad split."""

    GSM = "gsm"
    MATH = "math"
    OLYMPIAD = "olympiad"
