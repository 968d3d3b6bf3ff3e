"""Checks a `RunConfig` after the command line's overrides: every field's type and range, and the cross-field rules.

    cfg = validate(get_config())   # raises ConfigError naming the key, the value and what is allowed

Enum fields given as strings in a config file become their members; nothing else is changed.
"""

import dataclasses
import enum
import itertools
import math
import types
import typing
from typing import Any

from rstar_jax.config import SCRATCH_BASE, ConfigError, RunConfig

__all__ = ["validate"]


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether `value` is an instance of a config annotation (int, float, str, bool, enum, tuple[X, ...], X | None)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(annotation)
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe_type(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in annotation)
    if typing.get_origin(annotation) is tuple:
        return f"a tuple of {_describe_type(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _coerce_enums(value: Any, annotation: Any) -> Any:
    """Config files may give enum fields as plain strings; turn them into members (or leave them for the error)."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum) and isinstance(value, str):
        try:
            return annotation(value)
        except ValueError:
            return value
    if typing.get_origin(annotation) is tuple and isinstance(value, tuple | list):
        item = typing.get_args(annotation)[0]
        return tuple(_coerce_enums(v, item) for v in value)
    return value


def _validate_section(section: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key = f"{prefix}.{f.name}"
        annotation = hints[f.name]
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, annotation):
                raise ConfigError(f"{key} must be a {annotation.__name__} section, got {value!r}")
            _validate_section(value, key)
            continue
        value = _coerce_enums(value, annotation)
        setattr(section, f.name, value)
        if not _type_ok(value, annotation):
            raise ConfigError(f"{key} = {value!r}: expected {_describe_type(annotation)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} = {value!r}: must be finite")
        bounds = f.metadata
        if bounds.get("ge") is not None and value < bounds["ge"]:
            raise ConfigError(f"{key} = {value!r}: must be >= {bounds['ge']}")
        if bounds.get("gt") is not None and value <= bounds["gt"]:
            raise ConfigError(f"{key} = {value!r}: must be > {bounds['gt']}")
        if bounds.get("le") is not None and value > bounds["le"]:
            raise ConfigError(f"{key} = {value!r}: must be <= {bounds['le']}")


def validate(cfg: RunConfig) -> RunConfig:
    """Checks every field of `cfg` (types, ranges, cross-field rules); raises `ConfigError` naming the key.

    Enum fields given as strings in a config file are converted to their members. Returns `cfg`.
    """
    if not isinstance(cfg, RunConfig):
        raise ConfigError(f"get_config() must return a RunConfig, got {type(cfg).__name__}")
    _split_eval_lists(cfg)
    _validate_section(cfg, "config")
    if not cfg.workdir.strip():
        raise ConfigError("config.workdir = '': the run directory must be a non-empty path")
    if cfg.last_round < cfg.first_round:
        raise ConfigError(f"config.last_round = {cfg.last_round} is before config.first_round = {cfg.first_round}")
    if len(set(cfg.toy.bands)) != len(cfg.toy.bands) or not cfg.toy.bands:
        raise ConfigError(f"config.toy.bands = {cfg.toy.bands!r}: must be non-empty without repeats")
    more = cfg.evolve.unsolved_more_rollouts
    if any(n < 1 for n in more) or (more and not cfg.evolve.unsolved_rollouts):
        raise ConfigError(
            f"config.evolve.unsolved_more_rollouts = {more!r}: rollout counts >= 1, after a first search of the "
            f"unsolved problems (config.evolve.unsolved_rollouts = {cfg.evolve.unsolved_rollouts}, must be > 0)"
        )
    if any(r < 1 for r in cfg.evolve.full_eval_rounds):
        raise ConfigError(f"config.evolve.full_eval_rounds = {cfg.evolve.full_eval_rounds!r}: rounds start at 1")
    if cfg.toy_model.read_per_band and (cfg.model.base != SCRATCH_BASE or cfg.data.train_file):
        raise ConfigError(
            f"config.toy_model.read_per_band = {cfg.toy_model.read_per_band}: reading pretraining makes the toy's "
            f"from-scratch tiny base; it needs config.model.base = {SCRATCH_BASE!r} and no config.data.train_file "
            "(or use 0)"
        )
    if cfg.run_rounds and cfg.model.base == SCRATCH_BASE and cfg.data.train_file:
        raise ConfigError(
            f"config.model.base = {SCRATCH_BASE!r} makes a toy decoder, which only knows the toy domain; "
            f"config.data.train_file = {cfg.data.train_file!r} needs an HF base directory"
        )
    if cfg.run_rounds and cfg.data.train_file and not cfg.model.base:
        raise ConfigError(
            f"config.data.train_file = {cfg.data.train_file!r} needs config.model.base (the HF directory each round's "
            "SFT starts from; the toy's tiny decoder only knows the toy domain), or config.run_rounds=false"
        )
    _validate_toy_model(cfg)
    buckets = cfg.model.length_buckets
    if buckets & (buckets - 1):
        raise ConfigError(f"config.model.length_buckets = {buckets}: must be a power of two (1, 2, 4, 8, ...)")
    sizes = {k: getattr(cfg.mesh, k) for k in ("data", "fsdp", "tensor")}
    for k, v in sizes.items():
        if v == 0:
            raise ConfigError(f"config.mesh.{k} = 0: a mesh axis has size >= 1, or -1 for the devices left over")
    if list(sizes.values()).count(-1) > 1:
        raise ConfigError(f"config.mesh = {sizes}: at most one of config.mesh.data / fsdp / tensor may be -1")
    _validate_benchmarks(cfg.data.eval_benchmarks)
    _validate_eval(cfg)
    return cfg


def _validate_toy_model(cfg: RunConfig) -> None:
    """Section `toy_model`: the tiny decoder's heads divide its width, KV heads divide the heads, head_dim is even."""
    m = cfg.toy_model
    if m.hidden % m.heads:
        raise ConfigError(
            f"config.toy_model.heads = {m.heads}: must divide config.toy_model.hidden = {m.hidden} "
            "(head_dim = hidden / heads)"
        )
    if m.heads % m.kv_heads:
        raise ConfigError(
            f"config.toy_model.kv_heads = {m.kv_heads}: must divide config.toy_model.heads = {m.heads} "
            "(grouped-query attention)"
        )
    if (m.hidden // m.heads) % 2:
        raise ConfigError(
            f"config.toy_model.hidden = {m.hidden}: head_dim = hidden / heads = {m.hidden // m.heads} must be even "
            f"(RoPE rotates pairs; config.toy_model.heads = {m.heads})"
        )


def _validate_benchmarks(names: tuple[str, ...]) -> None:
    from rstar_jax.data import BENCHMARK_FILES  # local import: the data package is heavier than this module

    for name in names:
        if name not in BENCHMARK_FILES:
            raise ConfigError(
                f"config.data.eval_benchmarks: unknown benchmark {name!r}; allowed: {', '.join(BENCHMARK_FILES)}"
            )


def _split_eval_lists(cfg: RunConfig) -> None:
    """`--config.eval.benchmarks=math500,aime2024` arrives as one comma-joined string: split it into names."""
    e = getattr(cfg, "eval", None)
    for name in ("benchmarks", "methods"):
        value = getattr(e, name, None)
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            setattr(e, name, tuple(p.strip() for v in value for p in v.split(",") if p.strip()))


def _validate_eval(cfg: RunConfig) -> None:
    """Section `eval`: known benchmark names, methods without repeats, strictly increasing budgets."""
    from rstar_jax.data import BENCHMARK_FILES

    e = cfg.eval
    for name in e.benchmarks:
        if name != "toy" and name not in BENCHMARK_FILES:
            raise ConfigError(
                f"config.eval.benchmarks: unknown benchmark {name!r}; allowed: toy, {', '.join(BENCHMARK_FILES)}"
            )
    if not e.budgets or any(b < 1 for b in e.budgets) or any(a >= b for a, b in itertools.pairwise(e.budgets)):
        raise ConfigError(f"config.eval.budgets = {e.budgets!r}: must be positive and strictly increasing")
    if not e.methods or len(set(e.methods)) != len(e.methods):
        raise ConfigError(f"config.eval.methods = {e.methods!r}: must be non-empty without repeats")
