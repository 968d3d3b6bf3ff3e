"""Public answer checking: `answers_match` (one pair) and `answers_match_batch` (many, in parallel).

Every check first tries `normalize.fast_verdict` in the calling thread (string equality after
normalisation, choice letters, unit conflicts, plain numbers: microseconds, cannot hang). Everything else
goes to a worker process of a `GraderPool` (math-verify + sympy, `symbolic.py`) under a hard time limit;
a timeout or crash counts as "no match". Model text is never passed to `eval`/`exec`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from rstar_jax.grading.normalize import fast_verdict
from rstar_jax.grading.pool import GraderPool

Reference = str | Sequence[str]

_DEFAULT_POOL: GraderPool | None = None
_DEFAULT_POOL_LOCK = threading.Lock()


def default_pool() -> GraderPool:
    """The process-wide pool used when no `pool=` is given (created on first use, closed at exit)."""
    global _DEFAULT_POOL
    with _DEFAULT_POOL_LOCK:
        if _DEFAULT_POOL is None:
            _DEFAULT_POOL = GraderPool()
        return _DEFAULT_POOL


def _references(ref: Reference | None) -> list[str]:
    """A reference answer or list of alternatives as a list of strings; ints/floats are `str()`-ed; None (the
    whole reference or one alternative) is no reference and matches nothing. `bytes` are refused: they are
    a sequence of ints, and `b"12"` must not become the alternatives 49 and 50."""
    if ref is None:
        return []
    if isinstance(ref, bytes | bytearray | memoryview):
        raise TypeError(
            f"rstar_jax/grading/grader.py: ref must be str or a sequence of str, got {type(ref).__name__} "
            f"{bytes(ref)[:40]!r} (decode it first)"
        )
    if isinstance(ref, str | int | float):
        items = [ref]
    elif isinstance(ref, Sequence):
        items = list(ref)
    else:
        raise TypeError(f"rstar_jax/grading/grader.py: ref must be str or a sequence of str, got {type(ref).__name__}")
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise TypeError(
                f"rstar_jax/grading/grader.py: reference answers must be str (or a sequence of str), "
                f"got {type(item).__name__}: {item!r}"
            )
        out.append(str(item))
    return out


def answers_match(
    pred: str | None,
    ref: Reference | None,
    *,
    timeout_s: float = 5.0,
    percent_as_fraction: bool = True,
    pool: GraderPool | None = None,
) -> bool:
    """True when the predicted answer is mathematically equivalent to the reference (or to ANY element of
    a list of references).

    Args:
      pred: extracted answer (e.g. from `extract_answer`); None never matches.
      ref: reference answer, or a sequence of acceptable answers; None (or a None element) never matches.
      timeout_s: hard limit on the symbolic check, in seconds; past it the answer counts as wrong.
      percent_as_fraction: whether `50%` may also mean 0.5 (it always matches 50).
      pool: worker pool to use; the shared `default_pool()` when None.
    """
    if not timeout_s > 0:
        raise ValueError(f"rstar_jax/grading/grader.py: timeout_s must be > 0, got {timeout_s}")
    if pred is None:
        return False
    if not isinstance(pred, str):
        raise TypeError(f"rstar_jax/grading/grader.py: pred must be str or None, got {type(pred).__name__}")
    pending = []
    for reference in _references(ref):
        verdict = fast_verdict(pred, reference, percent_as_fraction)
        if verdict is True:
            return True
        if verdict is None:
            pending.append(reference)
    if not pending:
        return False
    return (pool or default_pool()).check(pred, pending, percent_as_fraction, timeout_s)


def answers_match_batch(
    preds: Sequence[str | None],
    refs: Sequence[Reference | None],
    *,
    timeout_s: float = 5.0,
    percent_as_fraction: bool = True,
    pool: GraderPool | None = None,
) -> list[bool]:
    """`answers_match` over aligned lists, `[N] -> [N]`, using every worker of the pool in parallel.

    Each distinct (pred, ref) pair is checked once and keeps its own `timeout_s`, so a batch takes about
    (distinct pairs) * (mean check time) / max_workers.
    """
    if len(preds) != len(refs):
        raise ValueError(
            f"rstar_jax/grading/grader.py: answers_match_batch got {len(preds)} preds but {len(refs)} refs"
        )
    if not timeout_s > 0:
        raise ValueError(f"rstar_jax/grading/grader.py: timeout_s must be > 0, got {timeout_s}")
    pool = pool or default_pool()
    results: list[bool] = [False] * len(preds)
    # Symbolic work keyed by (pred, pending refs): identical answers (common among MCTS rollouts) run once.
    slow: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, (pred, ref) in enumerate(zip(preds, refs, strict=True)):
        if pred is None:
            continue
        if not isinstance(pred, str):
            raise TypeError(f"rstar_jax/grading/grader.py: preds[{i}] must be str or None, got {type(pred).__name__}")
        references = _references(ref)
        verdicts = [fast_verdict(pred, r, percent_as_fraction) for r in references]
        if True in verdicts:
            results[i] = True
        elif None in verdicts:
            pending = tuple(r for r, v in zip(references, verdicts, strict=True) if v is None)
            slow.setdefault((pred, pending), []).append(i)

    def run(key: tuple[str, tuple[str, ...]]) -> bool:
        return pool.check(key[0], key[1], percent_as_fraction, timeout_s)

    if slow:
        keys = list(slow)
        with ThreadPoolExecutor(max_workers=min(pool.max_workers, len(keys))) as executor:
            for key, verdict in zip(keys, executor.map(run, keys), strict=True):
                for i in slow[key]:
                    results[i] = verdict
    return results
