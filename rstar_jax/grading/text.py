"""String-level answer handling: clean-up, normal forms, choice letters, units, words, braces.

Everything here is linear-time string work (regexes without nested quantifiers), safe to run in the calling
thread with no time limit. `rstar_jax/grading/normalize.py` re-exports these names and builds `fast_verdict`
on them; the symbolic worker uses `canonical_latex` to pre-normalise its input the same way.
"""

from __future__ import annotations

import re
import unicodedata

MAX_ANSWER_CHARS = 4000  # a final answer longer than this is not an answer: no match, no worker time
MAX_NESTING = 64  # nor is one nested deeper than this (brackets of any kind)

# --------------------------------------------------------------------------------------------------
# Clean-up shared by the fast path and the worker
# --------------------------------------------------------------------------------------------------

_UNICODE_MATH = {
    **dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f")),  # invisible: dropped
    ord("\u2212"): "-",
    ord("\u2044"): "/",
    ord("\u00d7"): "\\times ",
    ord("\u00b7"): "\\cdot ",
    ord("\u03c0"): "\\pi ",
    ord("\u221e"): "\\infty ",
    ord("\u2248"): "\\approx ",
    ord("\u2205"): "\\emptyset ",
}
_SUPERSCRIPTS = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u207b]+")
# `√2` -> `\sqrt{2}`, `√23` -> `\sqrt{23}` (in LaTeX `\sqrt23` would be sqrt(2)*3), `∛x` -> `\sqrt[3]{x}`.
_UNICODE_ROOT = re.compile("([\u221a\u221b\u221c])\\s*(\\d+(?:\\.\\d+)?|[A-Za-z](?![A-Za-z]))?")
_ROOT_INDEX = {"\u221a": "\\sqrt", "\u221b": "\\sqrt[3]", "\u221c": "\\sqrt[4]"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LEADING_APPROX = re.compile(r"^\s*\\approx(?![A-Za-z])\s*")
# Single letters that are units even when written tight against the number (`5\mathrm{m}`, `30\text{s}`).
# Any other single letter in `\mathrm{}` / `\text{}` is a math symbol: `2\mathrm{i}` is 2i, `3\mathrm{e}` is 3e.
LETTER_UNITS = frozenset("mgslLhtNJWVACFKT")
_LETTER_WRAPPER = re.compile(
    r"\\(?:mathrm|text|textrm|mbox|operatorname)\{(?P<lead>(?:\s|~)*)(?P<letter>[A-Za-z])\s*\}"
)


def _superscript_power(match: re.Match[str]) -> str:
    return "^{" + unicodedata.normalize("NFKC", match.group(0)) + "}"


def _unicode_root(match: re.Match[str]) -> str:
    command = _ROOT_INDEX[match.group(1)]
    return command + ("{" + match.group(2) + "}" if match.group(2) else " ")


def clean_unicode(s: str) -> str:
    """Unicode forms to ASCII math: `x²` -> `x^{2}` (before NFKC, which would give `x2`), NFKC (full-width
    `４２` -> `42`, `½` -> `1/2`), `−×·π∞≈∅` to `- \\times \\cdot \\pi \\infty \\approx \\emptyset`, `√2` ->
    `\\sqrt{2}`; zero-width marks and control characters (`\\x00`) are dropped."""
    if s.isascii():
        return s if s.isprintable() else _CONTROL.sub("", s)
    s = _SUPERSCRIPTS.sub(_superscript_power, s)
    s = unicodedata.normalize("NFKC", s)
    s = _UNICODE_ROOT.sub(_unicode_root, s)
    return _CONTROL.sub("", s.translate(_UNICODE_MATH))


def _unwrap_letter(match: re.Match[str]) -> str:
    letter = match.group("letter")
    if letter in "eEiI" or not (match.group("lead") or letter in LETTER_UNITS):
        return letter
    return match.group(0)  # a unit: `\mathrm{m}`, `\mathrm{~d}`


def canonical_latex(s: str) -> str:
    """`clean_unicode`, then LaTeX synonyms: a leading `\\approx` is dropped, `\\varnothing` -> `\\emptyset`,
    a single letter that is not a unit (`split_unit`) loses its `\\mathrm{}`/`\\text{}` (`1+2\\mathrm{i}` ->
    `1+2i`, `5\\text{ i}` -> `5i`)."""
    out = _LEADING_APPROX.sub("", clean_unicode(s))
    out = out.replace("\\varnothing", "\\emptyset")
    return _LETTER_WRAPPER.sub(_unwrap_letter, out) if "{" in out else out


# --------------------------------------------------------------------------------------------------
# Normal form
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
    "~",
    "\\displaystyle",
    "$",
)
_WRAPPERS = re.compile(r"^\\(?:text|textbf|mathrm|mbox|textrm)\{([^{}]*)\}$")


def normalize(s: str) -> str:
    """Cheap canonical form used for exact-string comparison: `[\\dfrac{1}{2}.]` -> `\\frac{1}{2}`.

    `canonical_latex`, then drops `$`, `\\left`/`\\right`, spacing commands and `~`, all whitespace, a trailing
    period, degree marks and unifies `\\dfrac`/`\\tfrac` to `\\frac`. Equal normal forms are the same answer
    (except an empty one, which is no answer: `fast_verdict`).
    """
    out = canonical_latex(s).strip()
    for token in _DROP:
        out = out.replace(token, "")
    out = out.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    out = out.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    out = "".join(out.split())
    out = out.rstrip(".")
    match = _WRAPPERS.match(out)
    return match.group(1) if match else out


def braces_balanced(s: str) -> bool:
    """True when every `{` has its `}` (escaped `\\{`, `\\}` are content): `5} + 1` is not an answer."""
    depth = 0
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


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


# --------------------------------------------------------------------------------------------------
# Words, units, multiple-choice letters
# --------------------------------------------------------------------------------------------------

_WORD = re.compile(r"^[A-Za-z]+$")


def words_verdict(pred_norm: str, ref_norm: str) -> bool | None:
    """Two bare words (letters only) compare as text, not as products of symbols: `No` ≠ `On` although
    n*o = o*n. Words of 2+ letters ignore case (`Yes` = `yes`); single letters do not (`e` ≠ `E`, `i` ≠ `I`).
    None when either side is not such a word."""
    if not (_WORD.match(pred_norm) and _WORD.match(ref_norm)):
        return None
    if max(len(pred_norm), len(ref_norm)) == 1:
        return pred_norm == ref_norm
    return pred_norm.lower() == ref_norm.lower()


_SPACING = r"(?:\s|~|\\[,;:! ]|\\q?quad(?![A-Za-z]))*"
_UNIT_TAIL = re.compile(
    rf"^(?P<body>.*?[0-9}}]){_SPACING}\\(?:text|mbox|mathrm|textrm)\{{(?P<lead>{_SPACING})"
    rf"(?P<unit>[A-Za-z]+(?: [A-Za-z]+)*){_SPACING}\}}(?:\^\{{?[23]\}}?)?$"
)


# Spelled-out units and their usual abbreviations, so that `18\\mathrm{~min}` = `18\\text{ minutes}` (after the
# plural is stripped and the unit lower-cased).
_UNIT_ALIASES = {
    "second": "s",
    "sec": "s",
    "minute": "min",
    "hour": "h",
    "hr": "h",
    "day": "d",
    "meter": "m",
    "metre": "m",
    "centimeter": "cm",
    "centimetre": "cm",
    "millimeter": "mm",
    "millimetre": "mm",
    "kilometer": "km",
    "kilometre": "km",
    "gram": "g",
    "kilogram": "kg",
    "liter": "l",
    "litre": "l",
    "milliliter": "ml",
    "millilitre": "ml",
    "inch": "in",
    "foot": "ft",
    "feet": "ft",
    "yard": "yd",
    "mile": "mi",
    "pound": "lb",
    "ounce": "oz",
    "newton": "n",
    "joule": "j",
    "watt": "w",
    "volt": "v",
}


def _canonical_unit(unit: str) -> str:
    unit = unit.lower()
    if unit.endswith(("ches", "shes", "sses", "xes")):
        unit = unit[:-2]  # inches -> inch
    elif unit.endswith("s") and not unit.endswith("ss") and len(unit) > 2:
        unit = unit[:-1]  # cents -> cent, cms -> cm
    return _UNIT_ALIASES.get(unit, unit)


def split_unit(s: str) -> tuple[str, str | None]:
    """`"5.4 \\text{ cents}"` -> (`"5.4"`, `"cent"`), `"273 \\mathrm{~km}"` -> (`"273"`, `"km"`), `"5\\text{ inches}"`
    -> (`"5"`, `"in"`): the unit singular, lower-case, abbreviated (`_UNIT_ALIASES`); answers without a
    trailing text unit -> (s, None). A single letter is a unit only if it is one of `LETTER_UNITS` or written
    with a space (`\\mathrm{~d}`), and never `e` or `i`: `2\\mathrm{i}` -> (`"2\\mathrm{i}"`, None)."""
    match = _UNIT_TAIL.match(s.strip())
    if match is None:
        return s, None
    unit = "".join(match.group("unit").split())
    if len(unit) == 1 and unit not in LETTER_UNITS and (not match.group("lead") or unit in "eEiI"):
        return s, None
    return match.group("body"), _canonical_unit(unit)


def units_conflict(pred: str, ref: str) -> bool:
    """True when BOTH answers carry a trailing text unit and the units differ (`5 \\text{cm}` vs `5 \\text{m}`)."""
    _, unit_p = split_unit(pred)
    _, unit_r = split_unit(ref)
    return unit_p is not None and unit_r is not None and unit_p != unit_r


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
