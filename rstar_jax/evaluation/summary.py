"""The evaluation's summary: accuracy per benchmark x method x budget with 95 % intervals, tables and curves.

    cells = summarise(rows_by_key, params=(policy_params, reward_params))   # [Cell]
    write_tables(cells, out)            # out/results.json (every cell) and out/results.md (largest budget)
    write_curves(cells, out, axis)      # out/curves_<benchmark>.png: accuracy vs mean budget per problem

An interval is the percentile bootstrap of the accuracy over problems (`evolve.intervals.paired_bootstrap`
against an all-wrong arm, so the same resamples and seed as the round report). FLOPs per problem are
2 x params x tokens: the policy's parameters times its generated plus prefilled tokens, plus the reward model's
parameters times the tokens it scored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rstar_jax.config import BudgetAxis
from rstar_jax.evolve.intervals import paired_bootstrap
from rstar_jax.workdir import write_json

__all__ = ["Cell", "summarise", "write_curves", "write_tables"]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One benchmark x method x budget: accuracy (percent) and its interval, n, mean costs per problem."""

    benchmark: str
    method: str
    budget: int
    accuracy: float
    interval: tuple[float, float]
    n: int
    trajectories: float
    tokens: float
    flops: float
    reward_calls: float
    wall_s: float


def summarise(rows: Mapping[tuple[str, str, int], Sequence[dict[str, Any]]], params: tuple[int, int]) -> list[Cell]:
    """Cells of every non-empty `(benchmark, method, budget) -> rows` entry, in the mapping's order."""
    cells = []
    for (benchmark, method, budget), found in rows.items():
        if not found:
            continue
        correct = np.array([bool(r["correct"]) for r in found])  # (n,)
        tokens = np.array([r["generated_tokens"] for r in found], np.float64)
        prefilled = np.array([r["prefilled_tokens"] for r in found], np.float64)
        scored = np.array([r["reward_tokens"] for r in found], np.float64)
        flops = 2 * params[0] * (tokens + prefilled) + 2 * params[1] * scored
        cells.append(
            Cell(
                benchmark,
                method,
                budget,
                float(100 * correct.mean()),
                paired_bootstrap(correct, np.zeros_like(correct)),
                len(found),
                float(np.mean([r["trajectories"] for r in found])),
                float(tokens.mean()),
                float(flops.mean()),
                float(np.mean([r["reward_calls"] for r in found])),
                float(np.sum([r["wall_s"] for r in found])),
            )
        )
    return cells


def write_tables(cells: Sequence[Cell], out: Path) -> tuple[Path, Path]:
    """`out/results.json` (every cell) and `out/results.md` (per benchmark x method, its largest budget)."""
    write_json(out / "results.json", [dataclasses.asdict(c) for c in cells])
    last: dict[tuple[str, str], Cell] = {}
    for c in cells:
        if (c.benchmark, c.method) not in last or c.budget > last[c.benchmark, c.method].budget:
            last[c.benchmark, c.method] = c
    lines = [
        "| benchmark | method | budget | accuracy | 95% interval | n | trajectories | generated tokens | FLOPs |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for c in last.values():
        lines.append(
            f"| {c.benchmark} | {c.method} | {c.budget} | {c.accuracy:.1f}% | [{c.interval[0]:.1f}, "
            f"{c.interval[1]:.1f}] | {c.n} | {c.trajectories:.1f} | {c.tokens:.0f} | {c.flops:.3g} |"
        )
    md = out / "results.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "results.json", md


def _mantissa(v: float) -> int:
    return round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0


def _tick(v: float, _pos: Any = None) -> str:
    """A log-axis tick as a plain number (`4`, `2e+09`), not matplotlib's `4 x 10^0`."""
    return f"{v:g}"


def write_curves(cells: Sequence[Cell], out: Path, axis: BudgetAxis) -> list[Path]:
    """One PNG per benchmark: accuracy (with its interval) vs the mean `axis` per problem, a line per method."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for benchmark in dict.fromkeys(c.benchmark for c in cells):
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in dict.fromkeys(c.method for c in cells if c.benchmark == benchmark):
            mine = sorted((c for c in cells if (c.benchmark, c.method) == (benchmark, method)), key=lambda c: c.budget)
            x = [getattr(c, axis.value) for c in mine]
            y = [c.accuracy for c in mine]
            err = [[c.accuracy - c.interval[0] for c in mine], [c.interval[1] - c.accuracy for c in mine]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_tick))
        ax.xaxis.set_minor_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: _tick(v) if _mantissa(v) in (2, 4, 6, 8) else "")
        )
        ax.set_xlabel(f"{axis.value} per problem (log)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{benchmark}: accuracy vs budget (95% intervals)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{benchmark}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
