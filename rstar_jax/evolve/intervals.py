"""Paired comparisons of two accuracies over the same problems, with a 95 % paired-bootstrap interval.

    low, high = paired_bootstrap(a, b)      # a, b: bool (n,), problem i in both; points of mean(a) - mean(b)
    effect = compare("claim", Arm("round 4 greedy", outcomes, count), Arm("round 1 greedy", ...), threshold=10)

An `Arm` is one side of a comparison: its per-problem outcomes `{problem_id: correct}` and/or its count
`(correct, total)`. With outcomes on both sides the problems are paired by id (their intersection, sorted; none in
common checks nothing), the
point estimate is the exact difference of the two accuracies on those problems, and the interval resamples problem
indices `RESAMPLES` times with `numpy.random.default_rng(SEED)` (the percentile interval 2.5–97.5). With counts
only (old metrics without per-problem data) the point estimate comes from the counts, unpaired, and no interval is
given. `holds` compares the point estimate with the threshold, `clears` the interval's lower bound; both are None
without data. Strict claims ("higher", "beats") need more than the threshold, the others at least it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["RESAMPLES", "SEED", "Arm", "Effect", "compare", "paired_bootstrap"]

RESAMPLES = 2000
"""Bootstrap resamples per interval (a module constant: the report has no config knob)."""
SEED = 0
"""Seed of every interval's `default_rng`, so a report is reproducible byte for byte."""
LEVEL = 95
DASH = "—"


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a label, outcomes `{problem_id: correct}` (or None) and `(correct, total)`."""

    label: str
    outcomes: Mapping[str, bool] | None = None
    count: tuple[int, int] | None = None


@dataclass(frozen=True)
class Effect:
    """One paper claim `left - right (>|>=) threshold` points; accuracies in percent, None where data is missing.

    `interval` is the 95 % paired-bootstrap interval of the difference and `n` the number of problems paired
    (both None when only counts were available); `note` says why a value is missing.
    """

    claim: str
    left: str
    right: str
    left_pct: float | None
    right_pct: float | None
    difference: float | None
    interval: tuple[float, float] | None
    n: int | None
    threshold: int
    strict: bool
    holds: bool | None
    clears: bool | None
    note: str = ""

    @property
    def measured(self) -> str:
        """A one-line summary: both accuracies, the difference and its interval."""
        text = f"{self.left} {_fmt(self.left_pct, '%')} vs {self.right} {_fmt(self.right_pct, '%')}"
        if self.difference is not None:
            text += f": {self.difference:+.1f} points, {LEVEL}% interval {fmt_interval(self.interval)}, n {_n(self)}"
        return text + (f" ({self.note})" if self.note else "")


def _fmt(v: float | None, unit: str = "") -> str:
    return DASH if v is None else f"{v:.1f}{unit}"


def _n(e: Effect) -> str:
    return DASH if e.n is None else str(e.n)


def fmt_interval(interval: tuple[float, float] | None) -> str:
    return DASH if interval is None else f"[{interval[0]:+.1f}, {interval[1]:+.1f}]"


def paired_bootstrap(
    a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The percentile 95 % interval, in points, of mean(a) - mean(b) over problems resampled with replacement.

    a, b: bool (n,), n >= 1, entry i of both the same problem. Draws index matrices (resamples, n) with
    `default_rng(seed)`; each row's mean paired difference (in percent) is one bootstrap replicate.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length non-empty vectors; got shapes {a.shape}, {b.shape}")
    diff = a - b  # (n,) in {-1, 0, 1}
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))  # (resamples, n)
    replicates = 100 * diff[idx].sum(axis=1) / len(diff)  # (resamples,)
    tail = (100 - LEVEL) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _meets(value: Fraction | float, threshold: int, strict: bool) -> bool:
    return bool(value > threshold if strict else value >= threshold)


def compare(claim: str, left: Arm, right: Arm, *, threshold: int = 0, strict: bool = False, note: str = "") -> Effect:
    """The effect `left - right` against `threshold` points: paired when both arms have outcomes, else counts."""
    base = dict(claim=claim, left=left.label, right=right.label, threshold=threshold, strict=strict)
    if note:  # the caller already knows the claim cannot be checked (e.g. a single round)
        return Effect(**base, left_pct=None, right_pct=None, difference=None, interval=None, n=None,
                      holds=None, clears=None, note=note)  # fmt: skip
    if left.outcomes is not None and right.outcomes is not None:
        ids = sorted(set(left.outcomes) & set(right.outcomes))
        if ids:
            a = np.array([bool(left.outcomes[i]) for i in ids])  # (n,)
            b = np.array([bool(right.outcomes[i]) for i in ids])  # (n,)
            lp, rp = Fraction(100 * int(a.sum()), len(ids)), Fraction(100 * int(b.sum()), len(ids))
            interval = paired_bootstrap(a, b)
            return Effect(**base, left_pct=float(lp), right_pct=float(rp), difference=float(lp - rp),
                          interval=interval, n=len(ids), holds=_meets(lp - rp, threshold, strict),
                          clears=_meets(interval[0], threshold, strict))  # fmt: skip
        return compare(claim, left, right, threshold=threshold, strict=strict, note="no problem in both")
    pcts = [None if c is None or c[1] == 0 else Fraction(100 * c[0], c[1]) for c in (left.count, right.count)]
    lp, rp = pcts
    if lp is None or rp is None:
        return Effect(**base, left_pct=None if lp is None else float(lp), right_pct=None if rp is None else float(rp),
                      difference=None, interval=None, n=None, holds=None, clears=None,
                      note="missing data")  # fmt: skip
    return Effect(**base, left_pct=float(lp), right_pct=float(rp), difference=float(lp - rp), interval=None, n=None,
                  holds=_meets(lp - rp, threshold, strict), clears=None,
                  note="counts only: no per-problem data to pair")  # fmt: skip


def markdown_rows(found: Sequence[Effect]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the effects table: claim, both accuracies, difference, interval, n, verdicts."""
    yes = {True: "yes", False: "no", None: DASH}
    header = ["claim", "compared", "accuracies", "difference (points)", f"{LEVEL}% interval", "n", "holds",
              "interval clears"]  # fmt: skip
    rows = []
    for e in found:
        accuracies = f"{_fmt(e.left_pct, '%')} vs {_fmt(e.right_pct, '%')}"
        diff = DASH if e.difference is None else f"{e.difference:+.1f}"
        claim = e.claim + (f" ({e.note})" if e.note else "")
        rows.append([claim, f"{e.left} vs {e.right}", accuracies, diff, fmt_interval(e.interval), _n(e),
                     yes[e.holds], yes[e.clears]])  # fmt: skip
    return header, rows
