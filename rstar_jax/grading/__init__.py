"""Answer grading: extract the final `\\boxed{}` answer and judge it against a reference.

Public API:
  extract_answer(text) -> str | None
  answers_match(pred, ref, *, timeout_s=5.0, percent_as_fraction=True, pool=None) -> bool
  answers_match_batch(preds, refs, *, timeout_s=5.0, percent_as_fraction=True, pool=None) -> list[bool]
  GraderPool(max_workers=None, startup_timeout_s=120.0), default_pool()
"""

from rstar_jax.grading.extract import extract_answer
from rstar_jax.grading.grader import answers_match, answers_match_batch, default_pool
from rstar_jax.grading.pool import GraderPool

__all__ = ["GraderPool", "answers_match", "answers_match_batch", "default_pool", "extract_answer"]
