"""Shared test helper: XLA's compiled-memory analysis of every prefill and decode program the sampling engine runs.

    probe = MemoryProbe.install(monkeypatch)     # wraps the policy's prefill / decode chunk and the PPM's prefill
    policy.generate_ids(...); scorer.score_ids(...)
    probe.calls["prefill"]                       # one `Compiled` record per distinct program that ran

Each distinct program (by argument shapes and static arguments) is lowered and compiled once more with the same
arguments, without running it, and its `memory_analysis()` recorded: `used` = temporaries + outputs - outputs
aliased to donated inputs (the pool, the decode state), i.e. what the call adds on top of its inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from rstar_jax.sampling import kv_pool
from rstar_jax.sampling import policy as policy_module
from rstar_jax.sampling import scorer as scorer_module


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One compiled program: rows and padded tokens B x T, cache width C + T (prefill) or slots S (decode)."""

    kind: str
    rows: int
    tokens: int
    width: int
    temp: int
    output: int
    alias: int

    @property
    def used(self) -> int:
        return self.temp + self.output - self.alias


def analyse(jitted: Any, kind: str, args: tuple, kwargs: dict) -> Compiled:
    """Compile `jitted(*args, **kwargs)` ahead of time (nothing runs) and read its memory analysis."""
    ma = jitted.lower(*args, **kwargs).compile().memory_analysis()
    batch = next((a for a in args if isinstance(a, kv_pool.PrefillBatch)), None)
    if batch is not None:
        rows, T = batch.tokens.shape
        width = batch.prefix_slots.shape[1] + T
        tokens = rows * T
    else:  # a decode chunk: the prompts' shared prefix [L, P, C + T, K, H] and the rows' cache [L, R, G, K, H]
        dstate = args[2]
        shared = 0 if dstate.prefix is None else dstate.prefix.k.shape[2]
        rows, width, tokens = dstate.cache.k.shape[1], shared + dstate.cache.k.shape[2], 0
    return Compiled(kind, rows, tokens, width, ma.temp_size_in_bytes, ma.output_size_in_bytes, ma.alias_size_in_bytes)


class _Wrapped:
    def __init__(self, probe: MemoryProbe, jitted: Any, kind: str):
        self.probe, self.jitted, self.kind, self.seen = probe, jitted, kind, set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = (str(jax.tree.map(lambda x: getattr(x, "shape", x), args[2:])), str(sorted(kwargs.items())))
        if key not in self.seen:
            self.seen.add(key)
            self.probe.calls[self.kind].append(analyse(self.jitted, self.kind, args, kwargs))
        return self.jitted(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self.jitted.lower(*args, **kwargs)


class MemoryProbe:
    """Records `Compiled` for every distinct policy prefill ("prefill"), decode chunk ("chunk") and PPM
    prefill ("score") program that runs while installed."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Compiled]] = {"prefill": [], "chunk": [], "score": []}

    @classmethod
    def install(cls, monkeypatch: Any) -> MemoryProbe:
        probe = cls()
        monkeypatch.setattr(policy_module, "_PREFILL", _Wrapped(probe, policy_module._PREFILL, "prefill"))
        monkeypatch.setattr(policy_module, "_CHUNK", _Wrapped(probe, policy_module._CHUNK, "chunk"))
        monkeypatch.setattr(scorer_module, "_SCORE", _Wrapped(probe, scorer_module._SCORE, "score"))
        return probe
