"""Wrong verdicts found by probing `answers_match` (false positives first), and the rules that fix them.

Every row of `FIXED` was graded wrongly before these rules; `GUARDS` are neighbouring pairs that were already
right and must stay right.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy

from rstar_jax.grading import GraderPool, answers_match, answers_match_batch
from rstar_jax.grading import normalize as nz
from rstar_jax.grading.symbolic import prepare, scalar_close

T, F = True, False
TIMEOUT_S = 5.0
# two reference answers of collegemath: with i = sympy.I both chains are true, which must not make them equal
CHAIN_I = "i^{117}=\\left(i^{4}\\right)^{29}\\cdoti=1\\cdoti=i"
CHAIN_MINUS_I = "i^{7}=i^{4}\\cdoti^{3}=1\\cdot(-i)=-i"

# (pred, ref, expected)
FIXED = [
    # units written with spacing commands (`\mathrm{~km}` is the benchmarks' style), plurals, abbreviations
    ("273 \\mathrm{~m}", "273 \\mathrm{~km}", F),
    ("5 \\mathrm{~cm}", "5\\text{ m}", F),
    ("450 \\mathrm{~cm}^{2}", "450 \\mathrm{~m}^{2}", F),
    ("18\\mathrm{~min}", "18\\mathrm{~s}", F),
    ("5\\,\\mathrm{cm}", "5\\,\\mathrm{m}", F),
    ("5\\ \\text{cm}", "5\\ \\text{m}", F),
    ("5 \\text{ inches}", "5 \\text{ inch}", T),
    ("5 \\text{ meters}", "5 \\text{ m}", T),
    # a single letter after a number is a math symbol, not a unit
    ("2\\mathrm{i}", "2", F),
    ("2\\text{i}", "2", F),
    ("3\\mathrm{e}", "3", F),
    ("2\\mathrm{x}", "2", F),
    ("5\\text{ i}", "5", F),
    ("2\\mathrm{i}", "2i", T),
    ("1+2\\mathrm{i}", "1+2i", T),
    # thousands separators versus lists
    ("98118122142", "98, 118, 122, 142", F),
    ("45135", "45^\\circ, 135^\\circ", F),
    ("45^\\circ,135^\\circ", "45135", F),
    ("100, 200", "100200", F),
    ("2, 100", "2100", F),
    ("12, 345", "12345", F),
    ("407, 371, 370, 153", "153, 370, 371, 407", T),
    ("200, 100", "100, 200", T),
    ("110, 70", "70,110", T),  # `70,110` (MATH test 4791) is a list against a list
    # unbalanced braces would cut the worker's `\boxed{...}` short
    ("5} + 1", "5", F),
    ("5}\\times 0", "5", F),
    ("\\frac{1}{2", "\\frac{1}{2}", F),
    # sympy cannot evaluate these differences: undecided is not equal
    ("\\sin(2^{1000})", "3", F),
    ("\\tan(10^{100})", "1", F),
    ("\\cos(10^{200})", "\\frac12", F),
    ("\\sin(10^{100})", "\\sin(10^{100}+1)", F),
    ("\\sin(10^{100})", "0.5", F),
    # a decimal inside an expression is exact
    ("3.0000001 + 0", "3", F),
    ("10^{6}+0.5", "1000000", F),
    ("2 \\times 500000.25", "1000000", F),
    # long decimals are exact
    ("1" * 70 + ".5", "1" * 70, F),
    ("1" + "0" * 70 + ".5", "10^{70}", F),
    # words are text, not products of commuting symbols; single letters keep their case
    ("No", "On", F),
    ("no", "on", F),
    ("E", "e", F),
    # an empty answer is no answer, even against an empty reference
    ("", "", F),
    ("$$", "", F),
    ("\\,", "", F),
    ("\\text{}", "", F),
    # the imaginary unit
    ("-\\frac{3}{5}+\\frac{4}{5}i", "\\frac{-3+4i}{5}", T),
    ("\\frac{2i-1}{4}", "-\\frac14+\\frac12 i", T),
    ("\\frac{3+4i}{5}", "\\frac35+\\frac45 i", T),
    ("\\frac32 i", "1.5i", T),
    ("i", "\\sqrt{-1}", T),
    # synonyms and clean-up
    ("\\emptyset", "\\varnothing", T),
    ("\\approx 3.14", "3.14", T),
    ("24.33", "\\approx24.33^{\\circ}\\mathrm{F}", T),
    ("√2", "\\sqrt{2}", T),
    ("5\x00", "5", T),
]

GUARDS = [
    ("18\\mathrm{~min}", "18\\text{ minutes}", T),
    ("5\\mathrm{m}", "5", T),
    ("273", "273 \\mathrm{~km}", T),
    ("1,000", "1000", T),
    ("1,000", "1,0", F),
    ("111, \\! 111, \\! 111", "111111111", T),
    ("-2,-2", "-2", T),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", T),
    ("2 \\times 500000.5", "1000001", T),
    ("1.2676506\\times10^{30}", "2^{100}", T),
    ("1" * 70 + ".0", "1" * 70, T),
    ("Yes", "yes", T),
    ("\\text{No}", "no", T),
    ("I", "i", F),
    ("3+2i", "2+3i", F),
    ("x=2i", "2i", T),
    ("x=1+i", "x=1-i", F),
    (CHAIN_I, CHAIN_MINUS_I, F),
    ("\\text{no}", "\\text{on}", F),
]


@pytest.fixture(scope="module")
def pool():
    grader_pool = GraderPool(max_workers=2)
    yield grader_pool
    grader_pool.close()


@pytest.mark.parametrize(("pred", "ref", "expected"), FIXED)
def test_fixed_verdicts(pool, pred, ref, expected):
    assert answers_match(pred, ref, timeout_s=TIMEOUT_S, pool=pool) is expected


@pytest.mark.parametrize(("pred", "ref", "expected"), GUARDS)
def test_neighbouring_verdicts_unchanged(pool, pred, ref, expected):
    assert answers_match(pred, ref, timeout_s=TIMEOUT_S, pool=pool) is expected


def test_batch_none_references_never_match(pool):
    preds = ["5", "5", "5", "6"]
    refs = [["5", None], [None], None, "6"]
    assert answers_match_batch(preds, refs, pool=pool) == [True, False, False, True]


def test_bytes_reference_is_refused(pool):
    with pytest.raises(TypeError, match="grader.py: ref must be str .* got bytes"):
        answers_match("5", b"5", pool=pool)
    with pytest.raises(TypeError, match="got bytes"):
        answers_match_batch(["49"], [b"1"], pool=pool)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("273 \\mathrm{~km}", ("273", "km")),
        ("5\\,\\mathrm{cm}", ("5", "cm")),
        ("5\\ \\text{cm}", ("5", "cm")),
        ("450 \\mathrm{~cm}^{2}", ("450", "cm")),
        ("5 \\text{ inches}", ("5", "in")),
        ("18\\text{ minutes}", ("18", "min")),
        ("5\\mathrm{~d}", ("5", "d")),  # a spaced letter is a unit (days, dimes)
        ("2\\mathrm{i}", ("2\\mathrm{i}", None)),
        ("3\\mathrm{e}", ("3\\mathrm{e}", None)),
        ("2\\mathrm{x}", ("2\\mathrm{x}", None)),
    ],
)
def test_split_unit_spacing_and_letters(text, expected):
    assert nz.split_unit(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100, 200", None),
        ("1, 234", None),
        ("45^\\circ,135^\\circ", None),
        ("0,245", None),
        ("111, \\! 111, \\! 111", nz.PlainNumber(Fraction(111111111), None, False)),
        ("1" * 70 + ".5", nz.PlainNumber(Fraction(int("1" * 70 + "5"), 10), 1, False)),
    ],
)
def test_parse_plain_number_commas_and_length(text, expected):
    assert nz.parse_plain_number(text) == expected


def test_lists_and_comma_groups():
    assert nz.is_list("3, 5, 7") and nz.is_list("1,2") and nz.is_list("45^\\circ, 135^\\circ")
    assert not nz.is_list("1,000") and not nz.is_list("(1,2)") and not nz.is_list("-2, -2") and not nz.is_list("5,")
    assert nz.list_reading("70,110", "110, 70") == "70, 110"
    assert nz.list_reading("70,110", "70110") == "70,110"
    assert nz.list_reading("1,000", "1, 0") == "1,000"


def test_braces_words_and_clean_up():
    assert nz.braces_balanced("\\frac{1}{2}") and nz.braces_balanced("\\{1,2\\}") and nz.braces_balanced("\\\\{}")
    assert not nz.braces_balanced("5} + 1") and not nz.braces_balanced("\\frac{1}{2") and not nz.braces_balanced("}{")
    assert nz.words_verdict("No", "On") is False and nz.words_verdict("YES", "yes") is True
    assert nz.words_verdict("e", "E") is False and nz.words_verdict("x+1", "1+x") is None
    assert nz.clean_unicode("√2 + √23 + ∛8") == "\\sqrt{2} + \\sqrt{23} + \\sqrt[3]{8}"
    assert nz.clean_unicode("5\x00\x1b") == "5"
    assert nz.canonical_latex("\\approx 1+2\\mathrm{i} \\ne \\varnothing") == "1+2i \\ne \\emptyset"
    assert nz.canonical_latex("5\\text{ i} + 2\\mathrm{m} + 3\\mathrm{~d}") == "5i + 2\\mathrm{m} + 3\\mathrm{~d}"
    assert prepare("\\approx 2\\mathrm{e}", True) == "2e"


@pytest.mark.parametrize("pred", ["", "$$", "\\,", "\\text{}", "\\left.\\right.", "."])
def test_empty_prediction_is_never_correct(pred):
    assert nz.fast_verdict(pred, "", True) is False
    assert nz.fast_verdict(pred, "5", True) is False


BIG = sympy.Pow(10, 100, evaluate=False)
SCALARS = [
    (sympy.sin(sympy.Pow(2, 1000, evaluate=False)), sympy.Integer(3), False),
    (sympy.sin(BIG), sympy.sin(BIG + 1), False),
    (sympy.sin(BIG), sympy.Float("0.5"), False),
    (sympy.Add(sympy.Float("3.0000001"), 0, evaluate=False), sympy.Integer(3), False),
    (sympy.Add(sympy.Pow(10, 6, evaluate=False), sympy.Float("0.5"), evaluate=False), sympy.Integer(10**6), False),
    (sympy.Mul(2, sympy.Float("500000.25"), evaluate=False), sympy.Integer(10**6), False),
    (sympy.Float("1" * 70 + ".5"), sympy.Integer(int("1" * 70)), False),
    # right before, and must stay right: scientific notation is a plain decimal, `1.5 i` is exact
    (
        sympy.Mul(sympy.Float("1.2676506"), sympy.Pow(10, 30, evaluate=False), evaluate=False),
        2 ** sympy.Integer(100),
        True,
    ),
    (sympy.Mul(sympy.Float("1.5"), sympy.I, evaluate=False), sympy.Rational(3, 2) * sympy.I, True),
]


@pytest.mark.parametrize(("x", "y", "expected"), SCALARS)
def test_scalar_close_exactness(x, y, expected):
    assert scalar_close(x, y) is expected
