"""Table-driven equivalence cases for `rstar_jax.grading.answers_match`.

Each row is (prediction, reference, expected). Expected values are what a careful mathematician says about
the two written answers (not what any grader returns); the few policy choices (percentages, choice
letters, decimals) follow the rules documented in `rstar_jax/grading/normalize.py`.
"""

from __future__ import annotations

import pytest

from rstar_jax.grading import GraderPool, answers_match

T, F = True, False
NASTY_TIMEOUT_S = 2.0

# (pred, ref, expected)
CASES: list[tuple[str | None, str | tuple[str, ...] | list[str], bool]] = [
    # --- integers, thousands separators, signs, decimals ---
    ("1000", "1,000", T),
    ("1,000", "1000", T),
    ("1000", "1{,}000", T),
    ("10080", "10,\\!080", T),
    ("11111111100", "11,\\! 111,\\! 111,\\! 100", T),
    ("1001", "1,000", F),
    ("-5", "-5", T),
    ("5", "-5", F),
    ("+5", "5", T),
    ("007", "7", T),
    ("3.0", "3", T),
    ("3.00", "3", T),
    ("3.0000001", "3", F),
    ("2.5", "5/2", T),
    (".5", "0.5", T),
    ("0.0000001", "0.0000002", F),
    ("0.1", "0.10", T),
    ("100.0001", "100", F),
    ("42.", "42", T),
    ("0", "-0", T),
    ("12345678901234567890", "12345678901234567891", F),
    ("2^{100}", "1267650600228229401496703205376", T),
    # --- scientific notation ---
    ("1e-7", "0.0000001", T),
    ("1.5e3", "1500", T),
    ("1.5\\times10^{3}", "1500", T),
    ("1.5 \\times 10^3", "1500", T),
    ("2\\cdot 10^{5}", "200000", T),
    ("6.02e23", "6.02\\times10^{23}", T),
    ("1.5e3", "1501", F),
    ("6.72\\times10^{-5}", ".0000672", T),
    # --- money ---
    ("32348", "\\$32,\\!348", T),
    ("18.9", "\\$18.90", T),
    ("\\$18.90", "18.90", T),
    ("\\$36", "\\$37", F),
    # --- percentages (percent_as_fraction=True) ---
    ("0.5", "50\\%", T),
    ("0.5", "50%", T),
    ("50\\%", "50", T),
    ("50", "50\\%", T),
    ("50\\%", "0.5", T),
    ("0.5", "25\\%", F),
    ("\\frac{1}{8}", "12.5\\%", T),
    ("40\\%", "50\\%", F),
    # --- fractions ---
    ("0.5", "\\frac{1}{2}", T),
    ("\\frac12", "\\dfrac{1}{2}", T),
    ("3/4", "\\tfrac34", T),
    ("0.75", "\\frac{3}{4}", T),
    ("\\frac{2}{4}", "\\frac{1}{2}", T),
    ("0.333333", "\\frac{1}{3}", T),
    ("0.33", "\\frac{1}{3}", F),
    ("0.33333", "\\frac13", T),
    ("4\\frac{2}{3}", "\\frac{14}{3}", T),
    ("\\frac{9}{5}", "1\\frac{4}{5}", T),
    ("\\frac{-35}{9}", "-\\frac{35}{9}", T),
    ("\\frac{35}{9}", "-\\frac{35}{9}", F),
    ("0.3888", "\\frac{243}{625}", T),
    ("0.142857", "\\frac{1}{7}", T),
    ("0.14", "\\frac{1}{7}", F),
    ("\\frac9{19}", "\\frac{9}{19}", T),
    ("\\frac{2}{3}", "\\frac{3}{2}", F),
    ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}", T),
    ("\\frac{1}{2}\\sqrt{3}", "\\frac{\\sqrt{3}}{2}", T),
    ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}", T),
    ("\\frac{\\sqrt{2}}{3}", "\\frac{\\sqrt{3}}{3}", F),
    ("\\frac{11}{20}+\\frac{9a}{20}", "\\frac{11+9a}{20}", T),
    # --- roots ---
    ("\\sqrt{8}", "2\\sqrt{2}", T),
    ("\\sqrt{50}", "\\sqrt{51}", F),
    ("11\\sqrt{2}", "11\\sqrt2", T),
    ("\\sqrt{117}", "3\\sqrt{13}", T),
    ("1.41421356", "\\sqrt{2}", T),
    ("1.41", "\\sqrt{2}", F),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", T),
    ("2\\sqrt{3}+1", "1+2\\sqrt{3}", T),
    ("2", "\\sqrt[3]{8}", T),
    ("\\sqrt{6}", "\\sqrt{2}\\sqrt{3}", T),
    ("\\sqrt{5}", "\\sqrt{3}+\\sqrt{2}", F),
    # --- pi and other constants ---
    ("6.283185307", "2\\pi", T),
    ("3.14", "\\pi", F),
    ("\\frac{22}{7}", "\\pi", F),
    ("288 \\pi", "288\\pi", T),
    ("2\\pi+18", "18+2\\pi", T),
    ("\\frac{-\\pi}{6}", "-\\frac{\\pi}{6}", T),
    ("\\frac{\\pi}{6}", "-\\frac{\\pi}{6}", F),
    ("21.99114858", "7\\pi", T),
    ("9.8696", "\\pi^2", T),
    ("\\pi^{e}", "e^{\\pi}", F),
    ("3", "\\log_2 8", T),
    ("\\frac12", "\\sin(\\pi/6)", T),
    ("1", "\\cos 0", T),
    # --- known math-verify false positives and near misses ---
    ("1+1/e", "1-1/e", F),
    ("1-1/e", "1+1/e", F),
    ("1+1/e", "1+1/e", T),
    ("1-e^{-1}", "1-\\frac{1}{e}", T),
    ("\\frac{1}{2006!}", "\\frac{1}{2004!}", F),
    ("1/2006!", "1/2004!", F),
    ("\\frac{1}{2004!}", "1/2004!", T),
    ("10^{100}+1", "10^{100}", F),
    ("10^{-100}", "2\\cdot10^{-100}", F),
    ("101 \\cdot 100!", "101!", T),
    ("\\sqrt(2)", "4", F),
    # --- intervals ---
    ("[1,2]", "[1,2)", F),
    ("(1,2]", "(1,2]", T),
    ("(3, 4]", "(3,4]", T),
    ("(-\\infty,0)", "(-\\infty, 0]", F),
    ("(-\\infty, 0]", "(-\\infty,0]", T),
    ("(2, \\infty)", "(2,\\infty)", T),
    ("[5,\\infty)", "(5,\\infty)", F),
    ("(0.6, \\frac{8}{3}]", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", T),
    ("(-\\infty,2)\\cup(3,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)", T),
    ("(-\\infty,3)\\cup(2,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)", F),
    ("(0,36)", "(0,9) \\cup (9,36)", F),
    ("[-2,7]", "x \\in [-2,7]", T),
    ("(-\\infty,\\infty)", "\\mathbb{R}", T),
    # --- tuples / ordered pairs (order matters) ---
    ("(2,1)", "(1,2)", F),
    ("(3, -4)", "(3,-4)", T),
    ("(15,-29)", "(15,-29)", T),
    ("(-29,15)", "(15,-29)", F),
    ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", T),
    ("(\\frac{\\pi}{2},3)", "\\left( 3, \\frac{\\pi}{2} \\right)", F),
    ("(6, 31, -1)", "(6,31,-1)", T),
    ("(1,-16,-4,42)", "(1,-16,-4,43)", F),
    ("(1.5,-13)", "\\left( \\frac{3}{2}, -13 \\right)", T),
    ("(8,2)", "(8,-2)", F),
    # --- sets and unordered lists (order does not matter) ---
    ("\\{2,1\\}", "\\{1,2\\}", T),
    ("7, 5, 3", "3, 5, 7", T),
    ("-2,1", "1,-2", T),
    ("1,2", "1,-2", F),
    ("\\{-2, 1+\\sqrt{5}, 1-\\sqrt{5}\\}", "\\{1\\pm\\sqrt{5},-2\\}", T),
    ("\\{1,2\\}", "\\{1,2,3\\}", F),
    ("\\{\\}", "\\emptyset", T),
    ("1+\\sqrt{19}, 1-\\sqrt{19}", "1 \\pm \\sqrt{19}", T),
    # --- matrices and vectors ---
    ("\\begin{bmatrix}1\\\\2\\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", T),
    (
        "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{pmatrix}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        T,
    ),
    ("\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", F),
    ("\\begin{bmatrix}-1&0\\\\0&-1\\end{bmatrix}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", T),
    ("\\begin{pmatrix}\\frac12\\\\1\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\1\\end{pmatrix}", T),
    ("\\begin{pmatrix} -18 \\\\ -49 \\\\ 95 \\end{pmatrix}", "\\begin{pmatrix} -18 \\\\ -49 \\\\ 96 \\end{pmatrix}", F),
    # --- units and text ---
    ("5", "5 \\text{ cm}", T),
    ("5 \\text{ cm}", "5", T),
    ("5\\text{ m}", "5\\text{ cm}", F),
    ("6 \\text{ cm}", "5\\text{ cm}", F),
    ("5.4", "5.4 \\text{ cents}", T),
    ("864", "864 \\mbox{ inches}^2", T),
    ("15", "15\\mbox{ cm}^2", T),
    ("16", "15\\mbox{ cm}^2", F),
    ("Evelyn", "\\text{Evelyn}", T),
    ("\\text{Navin}", "\\text{Evelyn}", F),
    ("east", "\\text{east}", T),
    ("\\text{odd}", "\\text{even}", F),
    ("\\$10", "10 \\text{ dollars}", T),
    # --- degrees ---
    ("90", "90^\\circ", T),
    ("90^\\circ", "90", T),
    ("30^\\circ", "30^{\\circ}", T),
    ("135^\\circ", "145^\\circ", F),
    ("45°", "45", T),
    # --- equations / assignments ---
    ("5", "x=5", T),
    ("x=5", "5", T),
    ("x=6", "5", F),
    ("y=2x+3", "y = 2x + 3", T),
    ("2x+3", "y = 2x + 3", T),
    ("y=2x", "y=-2x", F),
    ("-5x+7y-11z-4=0", "5x - 7y + 11z + 4 = 0", T),
    # --- symbolic expressions ---
    ("(x+1)^2", "x^2+2x+1", T),
    ("x^3+3x+6", "x^3+3x-6", F),
    ("ab+2a+5b+10", "(a+5)(b+2)", T),
    ("2(3r^2-2r-12)", "6r^2-4r-24", T),
    ("q - p", "p - q", F),
    ("2(k+1)", "2k+2", T),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x", T),
    ("x^5-x^4+x^3-x^2+x+1", "x^5 - x^4 + x^3 - x^2 + x - 1", F),
    ("5r^5", "5r^{5}", T),
    # --- complex numbers ---
    ("6-5i", "6 - 5i", T),
    ("7i-2", "-2 + 7i", T),
    ("1-274i", "1+274i", F),
    ("3+2i", "2+3i", F),
    # --- unicode forms ---
    ("４２", "42", T),
    ("x²+1", "x^2+1", T),
    ("2x", "x²", F),
    ("½", "0.5", T),
    ("4\u200b2", "42", T),
    ("\u22125", "-5", T),
    ("2π", "2\\pi", T),
    ("3×10⁵", "300000", T),
    # --- multiple choice (letters A-E, compared exactly after unwrapping) ---
    ("A", "A", T),
    ("(A)", "A", T),
    ("C", "\\text{(C)}", T),
    ("\\text{(C)}", "C", T),
    ("\\textbf{(E)}", "\\text{(E)}", T),
    ("B", "A", F),
    ("e", "E", F),
    ("5", "B", F),
    # --- list-valued references: any element may match ---
    ("2", ["1", "2"], T),
    ("3", ["1", "2"], F),
    ("\\frac12", ("0.5", "x"), T),
    ("5", ("\\frac{10}{2}",), T),
    # --- missing / empty predictions ---
    (None, "5", F),
    ("", "5", F),
    # --- nasty inputs: False within the time limit, never a hang ---
    ("10^{10^{10^{10}}}", "10^{10^{10^{10}}}+1", F),
    ("10^{10^{10^{10}}}", "5", F),
    ("5", "10^{10^{10^{10}}}", F),
    ("(10^{10^{10}})!", "1", F),
    ("9999999999!", "1", F),
    ("{" * 3000 + "1" + "}" * 3000, "1", F),
    ("\\frac{1}{" * 300 + "2" + "}" * 300, "2", F),
    ("x" * 100_000, "1", F),
    ("10^{10^{10^{10}}}", "10^{10^{10^{10}}}", T),
]

# (pred, ref, expected) with percent_as_fraction=False: X% means X and never X/100.
PERCENT_LITERAL_CASES = [
    ("0.5", "50\\%", F),
    ("50\\%", "0.5", F),
    ("50", "50\\%", T),
    ("50\\%", "50", T),
    ("0.5", "50%", F),
    ("12.5", "12.5\\%", T),
]


@pytest.fixture(scope="module")
def pool():
    grader_pool = GraderPool(max_workers=2)
    yield grader_pool
    grader_pool.close()


def test_table_is_large_and_balanced():
    rows = CASES + PERCENT_LITERAL_CASES
    assert len(rows) >= 150
    assert sum(expected for *_, expected in rows) >= 50
    assert sum(not expected for *_, expected in rows) >= 50


@pytest.mark.parametrize(("pred", "ref", "expected"), CASES)
def test_answers_match_table(pool, pred, ref, expected):
    assert answers_match(pred, ref, timeout_s=NASTY_TIMEOUT_S, pool=pool) is expected


@pytest.mark.parametrize(("pred", "ref", "expected"), PERCENT_LITERAL_CASES)
def test_percent_literal_table(pool, pred, ref, expected):
    got = answers_match(pred, ref, timeout_s=NASTY_TIMEOUT_S, percent_as_fraction=False, pool=pool)
    assert got is expected
