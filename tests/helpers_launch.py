"""Shared test helper: run a `launch/` command in a subprocess and check its one-line refusal."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def launch(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m launch.<module> args...` from the repository root; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", f"launch.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_refused(proc: subprocess.CompletedProcess, *culprits: str) -> str:
    """Exit status 2, stderr exactly one line `error: ...` containing every culprit, no traceback, no stdout."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for culprit in culprits:
        assert culprit in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]
