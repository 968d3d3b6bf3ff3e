"""Symbolic answer equivalence (runs inside the grading worker process, never in the caller).

Built on math-verify (`parse` + `verify`, latex2sympy2_extended underneath) with both of its signal-based
timeouts disabled (`parsing_timeout=None`, `timeout_seconds=None`): the time limit is the worker process
boundary (`rstar_jax/grading/pool.py`). Only the LaTeX extractor is used, because math-verify's plain
expression extractor runs sympy's `parse_expr`, i.e. `eval`, on model text.

False-positive guard. math-verify's `sympy_numeric_eq` ends with `(a - b).evalf(chop=True) == 0`; `chop`
rounds tiny magnitudes to zero, so `1/2004!` "equals" `1/2006!`, and its float branch rounds to 6 decimal
places, so `1e-7` "equals" `2e-7`. `install_numeric_guard()` replaces that one function, inside this
process only, by `guarded_numeric_eq`: exact values must be exactly equal (rationals), or have a difference
that sympy's adaptive evalf finds to be exactly zero or, where evalf gives up, that sympy can prove zero
(simplify, minimal polynomial); a decimal literal inside a larger expression is read as the exact rational it
spells (`10^{6}+0.5` != `10^{6}`); a plain decimal follows the shared rule
`rstar_jax.grading.normalize.numbers_close`.

Imaginary unit. latex2sympy reads `i` as a plain symbol, so `\\frac{3+4i}{5}` and `\\frac35+\\frac45 i` differ
for it; `symbolic_match` maps a free symbol named `i` to `sympy.I` on both sides.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

import math_verify.grader
import mpmath
import sympy
from latex2sympy2_extended import latex2sympy
from math_verify import LatexExtractionConfig, parse, verify
from sympy.core.evalf import PrecisionExhausted
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom

from rstar_jax.grading.normalize import braces_balanced, canonical_latex, list_reading, normalize, numbers_close

_EVAL_DIGITS = 60
_MAX_EVAL_DIGITS = 600
_EXTRACTION = (LatexExtractionConfig(),)
_SCI = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)$")
_PERCENT = re.compile(r"\\?%")
_ONE_HUNDREDTH = sympy.UnevaluatedExpr(sympy.Rational(1, 100))
_ZERO_PROBE = sympy.Symbol("_zero_probe")

Number = tuple[Fraction, Fraction]  # (real part, imaginary part)


def _float_fraction(value: sympy.Float) -> Fraction:
    """The decimal a parsed literal spells, exactly: latex2sympy keeps every written digit (`Float(str)` takes
    its precision from the string), and `str` gives them back."""
    return Fraction(str(value))


def _float_decimals(value: sympy.Float) -> int:
    """Digits after the point of a parsed decimal literal: `0.333333` -> 6, `1e-7` -> 7, `1500.0` -> 0."""
    text = str(value)
    mantissa, _, exponent = text.partition("e")
    mantissa = mantissa.rstrip("0") if "." in mantissa else mantissa
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return decimals - int(exponent or "0")


def _eval_digits(*exprs: sympy.Basic) -> int:
    """Working precision: `_EVAL_DIGITS`, or more when a decimal literal has more significant digits (a
    72-digit decimal must not be rounded to 60 digits before it is compared)."""
    digits = [mpmath.libmp.prec_to_dps(f._prec) for e in exprs for f in e.atoms(sympy.Float)]
    return max([_EVAL_DIGITS, *(d + 10 for d in digits)])


def _numeric_parts(expr: sympy.Basic, digits: int = _EVAL_DIGITS) -> Number | None:
    """Real and imaginary parts of a closed-form number at `digits` digits, None if not a finite number."""
    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    value = sympy.N(expr, digits)
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


def _provably_zero(diff: sympy.Expr) -> bool:
    """True only when sympy proves `diff` == 0 symbolically (never from a numeric estimate)."""
    try:
        if sympy.simplify(diff) == 0:
            return True
    except Exception:  # noqa: BLE001 - sympy raises many types on odd input
        pass
    try:
        return sympy.minimal_polynomial(diff, _ZERO_PROBE) == _ZERO_PROBE
    except Exception:  # noqa: BLE001 - NotAlgebraic for transcendental values, and others
        return False


def _exact_equal(x: sympy.Basic, y: sympy.Basic) -> bool:
    """Equality of two exact closed forms. Rationals compare exactly (`10^{100}` != `10^{100}+1`); other
    values by evaluating x - y to `_EVAL_DIGITS` significant digits with sympy's adaptive evalf: a
    non-zero difference of any size (`1/2004! - 1/2006!`) evaluates to a non-zero number. When evalf runs out
    of precision, the difference is either an exact cancellation (`(sqrt2 + sqrt3)^2 - (5 + 2 sqrt6)`) or
    beyond reach (`sin(2^1000) - 3`): equal only if sympy proves it (`_provably_zero`)."""
    if not isinstance(x, sympy.Expr) or not isinstance(y, sympy.Expr) or x.free_symbols or y.free_symbols:
        return False
    x, y = x.doit(), y.doit()
    if x.is_Rational and y.is_Rational:
        return bool(x == y)
    try:
        diff = sympy.N(x - y, _EVAL_DIGITS, maxn=_MAX_EVAL_DIGITS, strict=True)
    except PrecisionExhausted:
        return _provably_zero(x - y)
    return bool(diff == 0)


def _exact_decimals(expr: sympy.Basic) -> sympy.Basic:
    """Every decimal literal of an expression replaced by the exact rational it spells (`0.5` -> 1/2)."""
    exact = {f: _float_fraction(f) for f in expr.atoms(sympy.Float)}
    return expr.xreplace({f: sympy.Rational(q.numerator, q.denominator) for f, q in exact.items()})


def _plain_decimal(expr: sympy.Basic) -> tuple[Fraction, int] | None:
    """(exact value, decimals) of a plain decimal: one literal (`0.333333`), also in scientific form
    (`-1.2676506 \\times 10^{30}`, decimals 7 - 30), the way `parse_plain_number` reads it; else None."""
    if isinstance(expr, sympy.Float):
        return _float_fraction(expr), _float_decimals(expr)
    if not isinstance(expr, sympy.Mul) or len(expr.args) > 3:
        return None
    floats = [a for a in expr.args if isinstance(a, sympy.Float)]
    powers = [a for a in expr.args if isinstance(a, sympy.Pow) and a.base == 10 and a.exp.is_Integer]
    signs = [a for a in expr.args if a == -1]
    if len(floats) != 1 or len(powers) != 1 or len(expr.args) != 2 + len(signs) or abs(powers[0].exp) > 9999:
        return None
    exponent = int(powers[0].exp)
    value = _float_fraction(floats[0]) * Fraction(10) ** exponent
    return (-value if signs else value), _float_decimals(floats[0]) - exponent


def scalar_close(x: sympy.Basic, y: sympy.Basic) -> bool:
    """Numeric closeness of two closed-form scalars under the shared policy; False when either has symbols.

    A plain decimal (`_plain_decimal`) is an approximation (`numbers_close`); a decimal inside any other
    expression is exact (`3.0000001 + 0` != 3, `2 \\times 500000.25` != 10^6)."""
    plain_x, plain_y = _plain_decimal(x), _plain_decimal(y)
    if plain_x is None:
        x = _exact_decimals(x)
    if plain_y is None:
        y = _exact_decimals(y)
    if plain_x is None and plain_y is None:
        return _exact_equal(x, y)
    digits = _eval_digits(x, y)
    px = (plain_x[0], Fraction(0)) if plain_x is not None else _numeric_parts(x, digits)
    py = (plain_y[0], Fraction(0)) if plain_y is not None else _numeric_parts(y, digits)
    if px is None or py is None:
        return False
    dec_x = plain_x[1] if plain_x is not None else None
    dec_y = plain_y[1] if plain_y is not None else None
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
    """Pre-normalise one answer for math-verify: `canonical_latex` (`\\approx 3.14` -> `3.14`, `2\\mathrm{i}` ->
    `2i`, which math-verify would read as 2 with a unit), `1.5e3` -> `1.5\\times10^{3}`; drop `%` when
    percentages are not read as fractions (so `50%` can only mean 50)."""
    text = canonical_latex(answer).strip()
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
    return _imaginary_unit(expr) if isinstance(expr, sympy.Expr) else None


def _imaginary_unit(item):
    """A free symbol named `i` becomes `sympy.I` (`\\frac{3+4i}{5}` is a complex number, not a polynomial in i).
    A relation keeps its form (`x = 2i` must not be decided False because x is real); where the substitution is
    not possible (an interval `[i, 2]` cannot be complex) or decides a chain (`i^4 = 1` -> True) the item is kept
    as parsed."""
    if not isinstance(item, sympy.Basic | sympy.MatrixBase):
        return item
    try:
        if isinstance(item, Relational):
            return item.func(_imaginary_unit(item.lhs), _imaginary_unit(item.rhs), evaluate=False)
        symbols = {s: sympy.I for s in item.free_symbols if isinstance(s, sympy.Symbol) and s.name == "i"}
        replaced = item.subs(symbols) if symbols else item
    except Exception:  # noqa: BLE001 - sympy refuses some substitutions (ValueError for intervals, ...)
        return item
    # An equation chain `i^{117} = i` would collapse to the constant True, which equals every other true one.
    return item if isinstance(replaced, BooleanAtom) else replaced


def _has_sympy(parsed: list) -> bool:
    return any(isinstance(item, sympy.Basic | sympy.MatrixBase) for item in parsed)


def symbolic_match(pred: str, ref: str, percent_as_fraction: bool) -> bool:
    """True when `pred` is mathematically equivalent to `ref` (single reference). May be slow: callers run
    it in the worker under a hard time limit. `install_numeric_guard()` must have been called."""
    if not braces_balanced(pred):  # `5} + 1` inside `\\boxed{...}` would be read as `5`
        return False
    pred_s, ref_s = prepare(pred, percent_as_fraction), prepare(ref, percent_as_fraction)
    pred_s, ref_s = list_reading(pred_s, ref_s), list_reading(ref_s, pred_s)  # `70,110` vs `110, 70`
    gold = [_imaginary_unit(g) for g in _parse(ref_s)]
    target = [_imaginary_unit(t) for t in _parse(pred_s)]
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
