"""Output post-processing and ExecResult invariants (no processes involved)."""

from __future__ import annotations

import pytest

from rstar_jax.execution import ExecResult, ExecStatus
from rstar_jax.execution.result import finalize_output, round_float_output, truncate_middle


@pytest.mark.parametrize(
    ("text", "rounded"),
    [
        ("0.333333333\n", "0.3333\n"),  # reference example
        ("16.0\n", "16.0\n"),  # already short
        ("2\n", "2\n"),  # "2.0\n" would be longer: kept
        ("[0.333333333]\n", "[0.333333333]\n"),  # only a whole-output float is rounded
        ("nan\n", "nan\n"),
        ("x = 0.1234567\n", "x = 0.1234567\n"),
    ],
)
def test_round_float_output(text: str, rounded: str) -> None:
    assert round_float_output(text) == rounded


def test_truncate_middle_keeps_head_and_tail() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    out = truncate_middle(text, 10)
    assert out == text[:5] + "..." + text[-5:]
    assert truncate_middle(text, 100) == text


def test_finalize_output_decodes_junk_without_failing() -> None:
    assert finalize_output(b"ok \xff\xfe\n", b"", 6, 1024, False) == "ok \ufffd\ufffd\n"


def test_finalize_output_head_and_tail_of_large_output() -> None:
    head, tail = b"H" * 40, b"T" * 40
    assert finalize_output(head, tail, 10**9, 20, False) == "H" * 10 + "..." + "T" * 10


def test_finalize_output_rounding_is_a_switch() -> None:
    assert finalize_output(b"0.1234567\n", b"", 10, 1024, True) == "0.1235\n"
    assert finalize_output(b"0.1234567\n", b"", 10, 1024, False) == "0.1234567\n"


def test_exec_result_status_derivation_and_consistency() -> None:
    assert ExecResult(True, "1\n", None, 0.1).status == ExecStatus.OK
    assert ExecResult(False, "", "NameError: x", 0.1).status == ExecStatus.EXCEPTION
    assert ExecResult(False, "", "timeout", 2.0, ExecStatus.TIMEOUT).observation == "timeout"
    assert ExecResult(True, " 4 \n", None, 0.1).observation == "4"
    with pytest.raises(ValueError, match="contradicts"):
        ExecResult(True, "", None, 0.1, ExecStatus.TIMEOUT)
    with pytest.raises(ValueError, match="error"):
        ExecResult(False, "", None, 0.1)
