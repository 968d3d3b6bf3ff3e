"""The fast path of the grader: `fast_verdict`, a verdict without sympy for the obvious pairs.

It is built on string work that cannot hang (`rstar_jax/grading/text.py`: clean-up, normal forms, units,
choice letters) and on plain numbers (`rstar_jax/grading/numbers.py`); their public names are re-exported
here. The numeric tolerance rule `numbers_close` is shared with the symbolic worker, so a plain-number pair
gets the same verdict on the fast path and in the worker.

Numeric policy (documented for users in the README section):
  * two exact values (integers, fractions, exact expressions) match only when equal; a decimal literal
    INSIDE a larger expression is exact too (`10^{6}+0.5` is 1000000.5, not about 10^6);
  * a plain decimal written with k digits after the point is an approximation: it matches x when it is
    a correct rounding of x (|x - d| <= 0.5 * 10^-k) AND the relative error is at most 1e-4; so
    0.333333 ~ 1/3 and 3.1416 ~ pi, but 0.33 !~ 1/3, 3.14 !~ pi and 3.0000001 !~ 3;
  * `X%` always matches X; it also matches X/100 when `percent_as_fraction` is True;
  * a comma is a thousands separator only without a space after it (`numbers.py`); a list never equals a
    plain number (`100, 200` != `100200`).
"""

from __future__ import annotations

from rstar_jax.grading.numbers import (
    MAX_NUMBER_CHARS,
    PlainNumber,
    has_comma_groups,
    is_list,
    list_reading,
    numbers_close,
    parse_plain_number,
    plain_numbers_match,
)
from rstar_jax.grading.text import (
    LETTER_UNITS,
    MAX_ANSWER_CHARS,
    MAX_NESTING,
    braces_balanced,
    canonical_latex,
    choice_letter,
    clean_unicode,
    is_unreasonable,
    normalize,
    split_unit,
    units_conflict,
    words_verdict,
)

__all__ = [
    "LETTER_UNITS",
    "MAX_ANSWER_CHARS",
    "MAX_NESTING",
    "MAX_NUMBER_CHARS",
    "PlainNumber",
    "braces_balanced",
    "canonical_latex",
    "choice_letter",
    "clean_unicode",
    "fast_verdict",
    "has_comma_groups",
    "is_list",
    "is_unreasonable",
    "list_reading",
    "normalize",
    "numbers_close",
    "parse_plain_number",
    "plain_numbers_match",
    "split_unit",
    "units_conflict",
    "words_verdict",
]


def _list_versus_number(pred: str, ref: str, num_p: PlainNumber | None, num_r: PlainNumber | None) -> bool | None:
    """False when one side is a plain number written without commas and the other a comma list (`98118122142`
    vs `98, 118, 122, 142`); None when no such pair, or when the number has commas (`70,110`: the worker
    reads it as a list, `numbers.list_reading`)."""
    for number, text, other in ((num_p, pred, ref), (num_r, ref, pred)):
        if number is not None and is_list(other):
            return None if has_comma_groups(text) else False
    return None


def fast_verdict(pred: str, ref: str, percent_as_fraction: bool) -> bool | None:
    """Verdict for obvious pairs without sympy, or None when the symbolic worker must decide.

    Definitive answers: an empty prediction (False, even against an empty reference); equal normal forms
    (True); unreasonable predictions (False, `is_unreasonable`) and ones with unbalanced braces (False:
    `5} + 1` would cut the worker's `\\boxed{}` short); choice-letter references (letters must be equal);
    two bare words (text, case-insensitive); conflicting units (False); a plain number against a comma list
    (False); two plain numbers (the numeric rule).
    """
    pred_norm = normalize(pred)
    if not pred_norm:
        return False
    ref_norm = normalize(ref)
    if pred_norm == ref_norm:
        return True
    if is_unreasonable(pred) or not braces_balanced(pred):
        return False
    ref_letter = choice_letter(ref)
    if ref_letter is not None:
        return choice_letter(pred) == ref_letter
    words = words_verdict(pred_norm, ref_norm)
    if words is not None:
        return words
    if units_conflict(pred, ref):
        return False
    num_p = parse_plain_number(pred)
    num_r = parse_plain_number(ref)
    if num_p is not None and num_r is not None:
        return plain_numbers_match(num_p, num_r, percent_as_fraction)
    return _list_versus_number(pred, ref, num_p, num_r)
