"""Symbolic answer equivalence (runs inside the grading worker process, never in the caller).

Built on math-verify (`parse` + `verify`, latex2sympy2_extended underneath) with both of its signal-based
timeouts disabled (`parsing_timeout=None`, `timeout_seconds=None`): the time limit is the worker process
boundary (`rstar_jax/grading/pool.py`). Only the LaTeX extractor is used, because math-verify's plain
expression extractor runs sympy's `parse_expr`, i.e. `eval`, on model text.

False-positive guard. math-verify's `sympy_numeric_eq` ends with `(a - b).evalf(chop=True) == 0`; `chop`
rounds tiny magnitudes to zero, so `1/2004!` "equals" `1/2006!`, and its float branch rounds to 6 decimal
places, so `1e-7` "equals" `2e-7`. `install_numeric_guard()` replaces that one function, inside this
process only, by `guarded_numeric_eq`: exact values must be exactly equal (rationals) or have a difference
that sympy's adaptive evalf cannot tell from zero at 600 digits; decimals follow the shared rule
`rstar_jax.grading.normalize.numbers_close`.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

import math_verify.grader
import sympy
from latex2sympy2_extended import latex2sympy
from math_verify import LatexExtractionConfig, parse, verify
from sympy.core.evalf import PrecisionExhausted

from rstar_jax.grading.normalize import clean_unicode, normalize, numbers_close

_EVAL_DIGITS = 60
_MAX_EVAL_DIGITS = 600
_MIXED_REL_TOL = Fraction(1, 10**6)  # expressions that contain a decimal somewhere, e.g. 1.5 * 10^3
_EXTRACTION = (LatexExtractionConfig(),)
_SCI = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)$")
_PERCENT = re.compile(r"\\?%")
_ONE_HUNDREDTH = sympy.UnevaluatedExpr(sympy.Rational(1, 100))

Number = tuple[Fraction, Fraction]  # (real part, imaginary part)


def _float_decimals(value: sympy.Float) -> int:
    """Digits after the point of a parsed decimal literal: `0.333333` -> 6, `1e-7` -> 7, `1500.0` -> 0."""
    text = str(value)
    mantissa, _, exponent = text.partition("e")
    mantissa = mantissa.rstrip("0") if "." in mantissa else mantissa
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return decimals - int(exponent or "0")


def _numeric_parts(expr: sympy.Basic) -> Number | None:
    """Real and imaginary parts of a closed-form number at `_EVAL_DIGITS` digits, None if not a finite number."""
    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    value = sympy.N(expr, _EVAL_DIGITS)
    real, imag = value.as_real_imag()
    parts = []
    for part in (real, imag):
        if part.is_zero:
            parts.append(Fraction(0))
        elif isinstance(part, sympy.Float | sympy.Rational) and part.is_finite:
            rational = sympy.Rational(part)
            parts.append(Fraction(int(rational.p), int(rational.q)))
        else:
            return None
    return parts[0], parts[1]


def _exact_equal(x: sympy.Basic, y: sympy.Basic) -> bool:
    """Equality of two exact closed forms. Rationals compare exactly (`10^{100}` != `10^{100}+1`); other
    values by evaluating x - y to `_EVAL_DIGITS` significant digits with sympy's adaptive evalf: a
    non-zero difference of any size (`1/2004! - 1/2006!`) evaluates to a non-zero number, while an exact
    cancellation (`(sqrt2 + sqrt3)^2 - (5 + 2 sqrt6)`) exhausts the precision budget, which means zero."""
    if not isinstance(x, sympy.Expr) or not isinstance(y, sympy.Expr) or x.free_symbols or y.free_symbols:
        return False
    x, y = x.doit(), y.doit()
    if x.is_Rational and y.is_Rational:
        return bool(x == y)
    try:
        diff = sympy.N(x - y, _EVAL_DIGITS, maxn=_MAX_EVAL_DIGITS, strict=True)
    except PrecisionExhausted:
        return True
    return bool(diff == 0)


def _precision(expr: sympy.Basic) -> tuple[bool, int | None]:
    """(contains a decimal, decimals when the whole expression is one decimal literal)."""
    if isinstance(expr, sympy.Float):
        return True, _float_decimals(expr)
    return bool(expr.atoms(sympy.Float)), None


def scalar_close(x: sympy.Basic, y: sympy.Basic) -> bool:
    """Numeric closeness of two closed-form scalars under the shared policy; False when either has symbols."""
    approx_x, dec_x = _precision(x)
    approx_y, dec_y = _precision(y)
    if not approx_x and not approx_y:
        return _exact_equal(x, y)
    px, py = _numeric_parts(x), _numeric_parts(y)
    if px is None or py is None:
        return False
    if (approx_x and dec_x is None) or (approx_y and dec_y is None):  # a decimal inside a larger expression
        scale = max(abs(px[0]), abs(px[1]), abs(py[0]), abs(py[1]))
        return all(abs(a - b) <= _MIXED_REL_TOL * scale for a, b in zip(px, py, strict=True))
    return all(numbers_close(a, b, dec_x, dec_y) for a, b in zip(px, py, strict=True))


def _percent_readings(expr: sympy.Basic) -> list[sympy.Basic]:
    """`X%` (math-verify's `X * UnevaluatedExpr(1/100)`) reads as X or X/100; anything else as itself."""
    if isinstance(expr, sympy.Mul) and len(expr.args) == 2 and expr.args[1] == _ONE_HUNDREDTH:
        value = expr.args[0]
        return [value, value / 100 if not isinstance(value, sympy.Float) else sympy.Float(value / 100)]
    return [expr]


def guarded_numeric_eq(a, b, float_rounding: int, numeric_precision: int) -> bool:
    """Drop-in for `math_verify.grader.sympy_numeric_eq` (same signature) without its false positives."""
    if isinstance(a, sympy.MatrixBase | sympy.MatrixExpr) and isinstance(b, sympy.MatrixBase | sympy.MatrixExpr):
        a, b = a.doit(), b.doit()
        if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase) and a.shape == b.shape:
            return all(
                guarded_numeric_eq(x, y, float_rounding, numeric_precision)
                for x, y in zip(a.flat(), b.flat(), strict=True)
            )
        return False
    if not isinstance(a, sympy.Basic) or not isinstance(b, sympy.Basic):
        return False
    return any(scalar_close(x, y) for x in _percent_readings(a) for y in _percent_readings(b))


def install_numeric_guard() -> None:
    """Route every numeric comparison of math-verify in THIS process through `guarded_numeric_eq`."""
    if not callable(getattr(math_verify.grader, "sympy_numeric_eq", None)):
        raise RuntimeError(
            "rstar_jax/grading/symbolic.py: math_verify.grader.sympy_numeric_eq not found; this math-verify "
            f"version ({getattr(math_verify, '__version__', 'unknown')}) is not supported by the numeric guard"
        )
    math_verify.grader.sympy_numeric_eq = guarded_numeric_eq
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def prepare(answer: str, percent_as_fraction: bool) -> str:
    """Pre-normalise one answer for math-verify: `1.5e3` -> `1.5\\times10^{3}`; drop `%` when percentages are
    not read as fractions (so `50%` can only mean 50)."""
    text = clean_unicode(answer).strip()
    sci = _SCI.match(text)
    if sci is not None:
        text = f"{sci.group(1)}\\times10^{{{sci.group(2)}}}"
    if not percent_as_fraction:
        text = _PERCENT.sub("", text)
    return text


def _parse(answer: str) -> list:
    return parse(f"\\boxed{{{answer}}}", extraction_config=_EXTRACTION, parsing_timeout=None)


def _fallback_expr(answer: str) -> sympy.Basic | None:
    """Direct latex2sympy parse of the normalised text, for answers math-verify could not extract."""
    try:
        expr = latex2sympy(normalize(answer))
    except Exception:  # noqa: BLE001 - any parser failure means "not parseable"
        return None
    return expr if isinstance(expr, sympy.Expr) else None


def _has_sympy(parsed: list) -> bool:
    return any(isinstance(item, sympy.Basic | sympy.MatrixBase) for item in parsed)


def symbolic_match(pred: str, ref: str, percent_as_fraction: bool) -> bool:
    """True when `pred` is mathematically equivalent to `ref` (single reference). May be slow: callers run
    it in the worker under a hard time limit. `install_numeric_guard()` must have been called."""
    pred_s, ref_s = prepare(pred, percent_as_fraction), prepare(ref, percent_as_fraction)
    gold, target = _parse(ref_s), _parse(pred_s)
    if verify(gold, target, timeout_seconds=None):
        return True
    if _has_sympy(gold) and _has_sympy(target):
        return False
    # sympy fallback: one side escaped math-verify's extraction.
    gold_expr = next((g for g in gold if isinstance(g, sympy.Expr)), None) or _fallback_expr(ref_s)
    pred_expr = next((t for t in target if isinstance(t, sympy.Expr)), None) or _fallback_expr(pred_s)
    if gold_expr is None or pred_expr is None:
        return False
    if scalar_close(gold_expr, pred_expr):
        return True
    try:
        return bool(sympy.simplify(gold_expr - pred_expr) == 0)
    except Exception:  # noqa: BLE001 - sympy raises many types on odd input
        return False
