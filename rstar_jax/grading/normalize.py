"""String-level answer handling that cannot hang: normalisation, plain numbers, choice letters, units.

Everything here is linear-time string work plus `fractions.Fraction` arithmetic on numbers the caller
has already bounded in length, so it is safe to run in the calling thread with no time limit. The
numeric tolerance rule `numbers_close` is shared with the symbolic worker, so a plain-number pair gets
the same verdict on the fast path and in the worker.

Numeric policy (documented for users in the README section):
  * two exact values (integers, fractions, exact expressions) match only when equal;
  * a decimal literal written with k digits after the point is an approximation: it matches x when it is
    a correct rounding of x (|x - d| <= 0.5 * 10^-k) AND the relative error is at most 1e-4; so
    0.333333 ~ 1/3 and 3.1416 ~ pi, but 0.33 !~ 1/3, 3.14 !~ pi and 3.0000001 !~ 3;
  * `X%` always matches X; it also matches X/100 when `percent_as_fraction` is True.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from fractions import Fraction

MAX_NUMBER_CHARS = 64  # longer digit strings go to the worker (bounded by its time limit)
MAX_ANSWER_CHARS = 4000  # a final answer longer than this is not an answer: no match, no worker time
MAX_NESTING = 64  # nor is one nested deeper than this (brackets of any kind)
_DECIMAL_REL_TOL = Fraction(1, 10_000)

# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

_DROP = (
    "\\$",
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\ ",
    "\\displaystyle",
    "$",
)
_WRAPPERS = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mbox|textrm)\{([^{}]*)\}$")


_UNICODE_MATH = {
    **dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f")),  # invisible: dropped
    ord("\u2212"): "-",
    ord("\u2044"): "/",
    ord("\u00d7"): "\\times ",
    ord("\u00b7"): "\\cdot ",
    ord("\u03c0"): "\\pi ",
    ord("\u221e"): "\\infty ",
}


_SUPERSCRIPTS = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u207b]+")


def _superscript_power(match: re.Match[str]) -> str:
    return "^{" + unicodedata.normalize("NFKC", match.group(0)) + "}"


def clean_unicode(s: str) -> str:
    """Unicode forms to ASCII math: `x²` -> `x^{2}` (before NFKC, which would give `x2`), NFKC (full-width
    `４２` -> `42`, `½` -> `1/2`), `−×·π∞` to `- \\times \\cdot \\pi \\infty`, no zero-width marks."""
    if s.isascii():
        return s
    s = _SUPERSCRIPTS.sub(_superscript_power, s)
    return unicodedata.normalize("NFKC", s).translate(_UNICODE_MATH)


def normalize(s: str) -> str:
    """Cheap canonical form used for exact-string comparison: `[\\dfrac{1}{2}.]` -> `\\frac{1}{2}`.

    Drops `$`, `\\left`/`\\right`, thin spaces, all whitespace, a trailing period, degree marks and unifies
    `\\dfrac`/`\\tfrac` to `\\frac`. Two answers with equal normal forms are the same answer.
    """
    out = clean_unicode(s).strip()
    for token in _DROP:
        out = out.replace(token, "")
    out = out.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    out = out.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    out = "".join(out.split())
    out = out.rstrip(".")
    match = _WRAPPERS.match(out)
    return match.group(1) if match else out


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------

_UNIT_TAIL = re.compile(
    r"^(?P<body>.*?[0-9}])\s*\\(?:text|mbox|mathrm)\{\s*(?P<unit>[A-Za-z][A-Za-z ]*)\}(?:\^\{?2\}?|\^\{?3\}?)?$"
)


def split_unit(s: str) -> tuple[str, str | None]:
    """`"5.4 \\text{ cents}"` -> (`"5.4"`, `"cent"`); answers without a trailing text unit -> (s, None)."""
    match = _UNIT_TAIL.match(s.strip())
    if match is None:
        return s, None
    unit = "".join(match.group("unit").split()).lower()
    if unit.endswith("s") and len(unit) > 2:
        unit = unit[:-1]
    return match.group("body"), unit


def units_conflict(pred: str, ref: str) -> bool:
    """True when BOTH answers carry a trailing text unit and the units differ (`5 \\text{cm}` vs `5 \\text{m}`)."""
    _, unit_p = split_unit(pred)
    _, unit_r = split_unit(ref)
    return unit_p is not None and unit_r is not None and unit_p != unit_r


# --------------------------------------------------------------------------------------------------
# Multiple-choice letters
# --------------------------------------------------------------------------------------------------

_CHOICE = re.compile(r"^\(?([A-E])\)?[.:]?$")


def choice_letter(s: str) -> str | None:
    """`"A"`, `"(C)"`, `"\\text{(C)}"`, `"\\textbf{E}"` -> the upper-case letter; anything else -> None.

    Lower-case letters are never choices (`e` is Euler's number, `x` a variable).
    """
    norm = normalize(s)
    inner = _WRAPPERS.match(norm)
    if inner is not None:
        norm = inner.group(1)
    match = _CHOICE.match(norm)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------------
# Plain numbers
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PlainNumber:
    """A number written plainly. `decimals` is None for exact values, k for a decimal with k digits after
    the point (a scientific exponent e shifts it to k - e); `percent` marks a trailing `%`."""

    value: Fraction
    decimals: int | None
    percent: bool


_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_DECIMAL = re.compile(r"^(?:\d+\.?\d*|\.\d+)$")
_SCI = re.compile(r"^(?P<m>\d+\.?\d*|\.\d+)(?:e|E|\\times10\^\{?|\\cdot10\^\{?)(?P<e>[+-]?\d{1,4})\}?$")
_FRAC = re.compile(r"^\\frac\{(\d+)\}\{(\d+)\}$|^\\frac(\d)(\d)$|^(\d+)/(\d+)$")


def _unsigned(body: str) -> tuple[Fraction, int | None] | None:
    """Value and decimals of an unsigned plain number (no sign, percent or unit), or None."""
    if _THOUSANDS.match(body):
        body = body.replace(",", "")
    if _DECIMAL.match(body):
        if "." in body:
            whole, frac = body.split(".")
            return Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac)), len(frac)
        return Fraction(int(body)), None
    sci = _SCI.match(body)
    if sci is not None:
        mantissa = _unsigned(sci.group("m"))
        if mantissa is None:
            return None
        exponent = int(sci.group("e"))
        value = mantissa[0] * Fraction(10) ** exponent
        return value, (mantissa[1] or 0) - exponent
    frac = _FRAC.match(body)
    if frac is not None:
        num, den = (g for g in frac.groups() if g is not None)
        return (Fraction(int(num), int(den)), None) if int(den) != 0 else None
    return None


def parse_plain_number(s: str) -> PlainNumber | None:
    """Parse `-1,000`, `12{,}000`, `10,\\!080`, `\\$3.50`, `50\\%`, `1.5e3`, `2\\times10^{5}`, `3/4`,
    `\\frac{3}{4}`, `-\\dfrac34`, `5.4\\text{ cents}`; return None for anything else (incl. lists `1,2`)."""
    body, _ = split_unit(s)
    body = normalize(body).replace("{,}", ",").replace("\\%", "%")
    if not body or len(body) > MAX_NUMBER_CHARS:
        return None
    percent = body.endswith("%")
    body = body.rstrip("%")
    sign = 1
    if body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    parsed = _unsigned(body)
    if parsed is None:
        return None
    return PlainNumber(sign * parsed[0], parsed[1], percent)


def numbers_close(x: Fraction, y: Fraction, x_decimals: int | None, y_decimals: int | None) -> bool:
    """The shared numeric rule (module docstring). `*_decimals` is None for exact values."""
    if x_decimals is None and y_decimals is None:
        return x == y
    diff = abs(x - y)
    if diff == 0:
        return True
    k = min(d for d in (x_decimals, y_decimals) if d is not None)
    if diff > Fraction(1, 2) * Fraction(10) ** (-k):
        return False
    return diff <= _DECIMAL_REL_TOL * max(abs(x), abs(y))


def plain_numbers_match(pred: PlainNumber, ref: PlainNumber, percent_as_fraction: bool) -> bool:
    """Apply `numbers_close` to every admissible reading of the two numbers (percent policy)."""

    def readings(n: PlainNumber) -> list[tuple[Fraction, int | None]]:
        out = [(n.value, n.decimals)]
        if n.percent and percent_as_fraction:
            out.append((n.value / 100, None if n.decimals is None else n.decimals + 2))
        return out

    return any(numbers_close(a, b, da, db) for a, da in readings(pred) for b, db in readings(ref))


def is_unreasonable(answer: str) -> bool:
    """True for strings no reference answer looks like (too long or too deeply nested): judged False at once."""
    if len(answer) > MAX_ANSWER_CHARS:
        return True
    depth = 0
    for ch in answer:
        if ch in "{([":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif ch in "})]":
            depth = max(depth - 1, 0)
    return False


def fast_verdict(pred: str, ref: str, percent_as_fraction: bool) -> bool | None:
    """Verdict for obvious pairs without sympy, or None when the symbolic worker must decide.

    Definitive answers: equal normal forms (True); unreasonable predictions (False, `is_unreasonable`);
    choice-letter references (letters must be equal);
    conflicting units (False); two plain numbers (the numeric rule).
    """
    if normalize(pred) == normalize(ref):
        return True
    if is_unreasonable(pred):
        return False
    ref_letter = choice_letter(ref)
    if ref_letter is not None:
        return choice_letter(pred) == ref_letter
    if units_conflict(pred, ref):
        return False
    num_p = parse_plain_number(pred)
    num_r = parse_plain_number(ref)
    if num_p is not None and num_r is not None:
        return plain_numbers_match(num_p, num_r, percent_as_fraction)
    return None
