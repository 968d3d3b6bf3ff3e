"""Character edit distance (Levenshtein) for the PPM pair filter (rstar_reference.md Part B §8.2, step 6).

The reference's `train/sample_rm_data.py` drops a step pair whose two steps are within edit distance 20 of each
other, using the `editdistance` package (unit-cost insertions, deletions and substitutions over the characters,
i.e. code points, of two `str`). This is the same distance as a plain dynamic programme, with two savings that
do not change the result: the common prefix and suffix are cut first, and with a `limit` only the band of cells
within `limit` of the diagonal is computed (any cell outside it is already above the limit), so a filter
question costs O(limit x length) instead of O(length^2).
"""

from __future__ import annotations

__all__ = ["edit_distance"]


def _trim(a: str, b: str) -> tuple[str, str]:
    """`a` and `b` without their common prefix and suffix (the distance does not change)."""
    start = 0
    end = min(len(a), len(b))
    while start < end and a[start] == b[start]:
        start += 1
    tail = 0
    while tail < end - start and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    return a[start : len(a) - tail], b[start : len(b) - tail]


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """The Levenshtein distance between `a` and `b` (unit costs, by character).

    Args:
      a, b: the two strings.
      limit: when given (>= 0), any distance above it is returned as `limit + 1`: enough to decide a threshold,
        and much cheaper on long, different strings.

    Returns:
      The distance, or `limit + 1` when it exceeds `limit`.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"rstar_jax/extract/distance.py: limit must be >= 0, got {limit}")
    a, b = _trim(a, b)
    if len(a) > len(b):
        a, b = b, a
    n, m = len(a), len(b)
    cap = m if limit is None else limit  # values above `cap` are all stored as `over`
    over = cap + 1
    if m - n > cap:
        return over
    if n == 0:
        return m
    prev = [j if j <= cap else over for j in range(m + 1)]
    for i in range(1, n + 1):
        lo, hi = max(1, i - cap), min(m, i + cap)
        cur = [over] * (m + 1)
        cur[0] = i if i <= cap else over
        ai = a[i - 1]
        best = cur[0] if lo == 1 else over
        for j in range(lo, hi + 1):
            v = prev[j - 1] + (ai != b[j - 1])
            if prev[j] + 1 < v:
                v = prev[j] + 1
            if cur[j - 1] + 1 < v:
                v = cur[j - 1] + 1
            cur[j] = v if v <= cap else over
            if cur[j] < best:
                best = cur[j]
        if best > cap:
            return over
        prev = cur
    return prev[m]
