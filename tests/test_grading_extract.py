"""`extract_answer`: the last brace-balanced `\\boxed{}` / `\\fbox{}`."""

from __future__ import annotations

import pytest

from rstar_jax.grading import extract_answer

CASES = [
    ("The answer is $\\boxed{5}$.", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}} and more text", "\\frac{\\sqrt{3}}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("spaced \\boxed {42}", "42"),
    ("spaced \\boxed  \n{42}", "42"),
    ("\\fbox{7}", "7"),
    ("\\boxed{ 3 }", "3"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\boxed{\\left\\{ x \\right\\}}", "\\left\\{ x \\right\\}"),
    ("First.\nSo the answer is \\boxed{3}", "3"),  # the reference's split('.\n') bug would lose this
    ("\\boxed{}", ""),
    ("\\boxed{a{b{c}d}e}", "a{b{c}d}e"),
    ("\\boxed{5", None),
    ("\\boxed{1} and \\boxed{2", None),
    ("no box here", None),
    ("", None),
    ("\\boxedx{5}", None),
    ("boxed{5}", None),
    ("\\boxed 5", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_deep_nesting_is_linear():
    depth = 50_000
    text = "\\boxed{" + "{" * depth + "x" + "}" * depth + "}"
    assert extract_answer(text) == "{" * depth + "x" + "}" * depth


def test_extract_answer_rejects_non_strings():
    with pytest.raises(TypeError, match="extract.py"):
        extract_answer(None)
