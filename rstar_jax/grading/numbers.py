"""Plain numbers, the shared numeric rule, and comma lists (policy: `rstar_jax/grading/normalize.py`).

Linear-time string work plus `fractions.Fraction` arithmetic on numbers of at most `MAX_NUMBER_CHARS`
characters (Python parses such integers in microseconds), so it runs in the calling thread.

Commas. A comma is a thousands separator only when it follows a digit, every group after it has exactly three
digits, and no space follows it in the written answer (`1,000`, `10,\\!080`, `12{,}000`; a comma with the
explicit negative space `\\!` counts as having no space, `11,\\! 111`). Anything else with a comma outside
brackets is a list (`100, 200`, `1,2`, `45^\\circ, 135^\\circ`), and a list never equals a plain number.
`70,110` is ambiguous: it is the number 70110 against a number, and the list 70, 110 against a list
(`list_reading`); a group with a leading zero (`1,000`) is never read as a list item.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

from rstar_jax.grading.text import normalize, split_unit

MAX_NUMBER_CHARS = 1000  # longer digit strings go to the worker (bounded by its time limit)
_DECIMAL_REL_TOL = Fraction(1, 10_000)


@dataclasses.dataclass(frozen=True, slots=True)
class PlainNumber:
    """A number written plainly. `decimals` is None for exact values, k for a decimal with k digits after
    the point (a scientific exponent e shifts it to k - e); `percent` marks a trailing `%`."""

    value: Fraction
    decimals: int | None
    percent: bool


# Patterns without nested or overlapping quantifiers: matching stays linear in the length.
_THOUSANDS = re.compile(r"^[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?$")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?:\s*\\!\s*)?\d{3}(?!\d)")  # one separator, checked on the written text
_DECIMAL = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
_SCI = re.compile(r"^(?P<m>\d+(?:\.\d*)?|\.\d+)(?:e|E|\\times10\^\{?|\\cdot10\^\{?)(?P<e>[+-]?\d{1,4})\}?$")
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
    `\\frac{3}{4}`, `-\\dfrac34`, `5.4\\text{ cents}`; return None for anything else (incl. lists `1,2`,
    `100, 200`). Decimals are exact: `0.1` is 1/10, however many digits are written."""
    body, _ = split_unit(s)
    if "," in body:
        written = body.replace("{,}", ",")
        if written.count(",") != len(_THOUSANDS_COMMA.findall(written)):
            return None
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
    """The shared numeric rule (normalize.py docstring). `*_decimals` is None for exact values."""
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


# --------------------------------------------------------------------------------------------------
# Comma lists
# --------------------------------------------------------------------------------------------------


def _top_level_items(norm: str) -> set[str]:
    """The distinct non-empty items of a normalised answer split at commas outside all brackets."""
    depth, items, start = 0, set(), 0
    for i, ch in enumerate(norm):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            items.add(norm[start:i])
            start = i + 1
    items.add(norm[start:])
    items.discard("")
    return items


def is_list(s: str) -> bool:
    """True for a bare comma list of 2+ different items (`3, 5, 7`, `1,2`, `45^\\circ, 135^\\circ`), not for a
    number with thousands separators (`1,000`), a bracketed tuple/set/interval (`(1,2)`, `\\{1,2\\}`) or one
    value repeated (`-2, -2`, a double root)."""
    return "," in s and len(_top_level_items(normalize(s))) >= 2 and parse_plain_number(s) is None


_ZERO_LED_GROUP = re.compile(r",(?:\s*\\!\s*)?0")


def has_comma_groups(s: str) -> bool:
    """True for a plain number written with comma separators whose groups could also be list items (`70,110`,
    `12{,}345`): ambiguous with a list. Not for `1,000` (no list item is written `000`)."""
    if "," not in s or parse_plain_number(s) is None:
        return False
    return not _ZERO_LED_GROUP.search(s.replace("{,}", ","))


_LIST_COMMA = re.compile(r"\{,\}|,(?:\s*\\!)?\s*")


def list_reading(s: str, other: str) -> str:
    """`s` as a list (`70,110` -> `70, 110`) when it is a comma-grouped number and `other` is a list; else `s`."""
    if has_comma_groups(s) and is_list(other):
        return _LIST_COMMA.sub(", ", s)
    return s
