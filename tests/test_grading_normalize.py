"""The pieces under `answers_match`: plain numbers, the numeric rule, letters, units, the sympy guard."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy

from rstar_jax.grading.normalize import (
    MAX_NUMBER_CHARS,
    PlainNumber,
    choice_letter,
    fast_verdict,
    is_unreasonable,
    normalize,
    numbers_close,
    parse_plain_number,
    split_unit,
    units_conflict,
)
from rstar_jax.grading.symbolic import prepare, scalar_close

PLAIN = [
    ("1,000", PlainNumber(Fraction(1000), None, False)),
    ("-12{,}000", PlainNumber(Fraction(-12000), None, False)),
    ("10,\\!080", PlainNumber(Fraction(10080), None, False)),
    ("\\$3.50", PlainNumber(Fraction(7, 2), 2, False)),
    ("50\\%", PlainNumber(Fraction(50), None, True)),
    ("12.5%", PlainNumber(Fraction(25, 2), 1, True)),
    ("1.5e3", PlainNumber(Fraction(1500), -2, False)),
    ("2\\times10^{-3}", PlainNumber(Fraction(2, 1000), 3, False)),
    ("3/4", PlainNumber(Fraction(3, 4), None, False)),
    ("-\\dfrac{3}{4}", PlainNumber(Fraction(-3, 4), None, False)),
    ("\\frac34", PlainNumber(Fraction(3, 4), None, False)),
    (".5", PlainNumber(Fraction(1, 2), 1, False)),
    ("5.4 \\text{ cents}", PlainNumber(Fraction(27, 5), 1, False)),
    ("1,2", None),
    ("1,-2", None),
    ("1,0000", None),
    ("3/0", None),
    ("x", None),
    ("", None),
    ("1" * (MAX_NUMBER_CHARS + 1), None),
]


@pytest.mark.parametrize(("text", "expected"), PLAIN)
def test_parse_plain_number(text, expected):
    assert parse_plain_number(text) == expected


def test_numbers_close_rule():
    third = Fraction(1, 3)
    assert numbers_close(Fraction(1, 2), Fraction(2, 4), None, None)
    assert not numbers_close(Fraction(10**30), Fraction(10**30 + 1), None, None)
    assert numbers_close(Fraction(333333, 10**6), third, 6, None)  # correct rounding, rel 1e-6
    assert not numbers_close(Fraction(33, 100), third, 2, None)  # correct rounding but rel 1e-2
    assert not numbers_close(Fraction(333, 1000), third, 6, None)  # 0.333000 is not a rounding of 1/3
    assert not numbers_close(Fraction(1, 10**7), Fraction(2, 10**7), 7, 7)
    assert numbers_close(Fraction(3), Fraction(3), 1, None)


@pytest.mark.parametrize(
    ("text", "letter"),
    [("A", "A"), ("(B)", "B"), ("\\text{(C)}", "C"), ("\\textbf{D}", "D"), ("E.", "E"), ("e", None), ("F", None)],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


def test_units():
    assert split_unit("5 \\text{ cm}") == ("5", "cm")
    assert split_unit("864 \\mbox{ inches}^2") == ("864", "in")
    assert split_unit("\\frac{270}7\\text{ degrees}") == ("\\frac{270}7", "degree")
    assert split_unit("\\text{Evelyn}") == ("\\text{Evelyn}", None)
    assert units_conflict("5\\text{ m}", "5\\text{ cm}")
    assert not units_conflict("5\\text{ cms}", "5\\text{cm}")
    assert not units_conflict("5", "5\\text{ cm}")


def test_normalize_and_unreasonable():
    assert normalize(" $\\left( \\dfrac{1}{2}, 3 \\right)$. ") == "(\\frac{1}{2},3)"
    assert normalize("90^{\\circ}") == normalize("90^\\circ") == "90"
    assert is_unreasonable("(" * 65 + "1" + ")" * 65)
    assert is_unreasonable("1" * 5000)
    assert not is_unreasonable("\\frac{\\sqrt{3}}{2}")


def test_fast_verdict_defers_non_numbers():
    assert fast_verdict("x+1", "1+x", True) is None
    assert fast_verdict("(1,2)", "(1,2)", True) is True
    assert fast_verdict("C", "\\text{(B)}", True) is False


def test_prepare():
    assert prepare(" 1.5e3 ", True) == "1.5\\times10^{3}"
    assert prepare("-2E-4", True) == "-2\\times10^{-4}"
    assert prepare("50\\%", True) == "50\\%"
    assert prepare("50\\%", False) == "50"


SCALARS = [
    (1 / sympy.factorial(2004), 1 / sympy.factorial(2006), False),
    (1 / sympy.factorial(2004), sympy.Integer(1) / sympy.factorial(2004), True),
    (sympy.Pow(10, 100, evaluate=False) + 1, sympy.Pow(10, 100, evaluate=False), False),
    (sympy.sqrt(5 + 2 * sympy.sqrt(6)), sympy.sqrt(2) + sympy.sqrt(3), True),
    (1 - 1 / sympy.E, 1 + 1 / sympy.E, False),
    (sympy.pi, sympy.Float("3.1416"), True),
    (sympy.pi, sympy.Float("3.14"), False),
    (sympy.Float("1e-7"), sympy.Float("2e-7"), False),
    (sympy.Rational(1, 3), sympy.Float("0.333333"), True),
    (2 + 3 * sympy.I, 2 + 3 * sympy.I, True),
    (2 + 3 * sympy.I, 3 + 2 * sympy.I, False),
    (sympy.Symbol("x"), sympy.Symbol("x"), False),  # symbolic: left to simplify, not to numbers
]


@pytest.mark.parametrize(("x", "y", "expected"), SCALARS)
def test_scalar_close(x, y, expected):
    assert scalar_close(x, y) is expected
