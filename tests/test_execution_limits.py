"""Executor limits found by probing with hostile programs: what a program leaves behind, memory outside RLIMIT_AS,
output at the file-size cap, hostile exit codes, the pipes between executor and zygote, the attribution of a
zygote's death, and results that must not depend on which zygote ran a program."""

from __future__ import annotations

import collections
import concurrent.futures
import os

import pytest

from rstar_jax.execution import ExecStatus, Executor
from rstar_jax.execution.executor import _Job
from rstar_jax.execution.routing import Flavour
from rstar_jax.execution.sandbox import MAX_FILES
from rstar_jax.execution.worker import WorkerDied
from rstar_jax.execution.zygote import remove_tree

DEEP_DIRS = "import os\nfor i in range(5000):\n    os.mkdir('a')\n    os.chdir('a')\nprint('deep ok')"
MANY_FILES = f"import os\nfor i in range({MAX_FILES + 100}):\n    open(f'f{{i}}', 'w').close()\nprint('all made')"
HOSTILE_EXIT = "\n".join(
    [
        "class C:",
        "    def __str__(self):",
        "        raise ValueError",
        "    def __eq__(self, other):",
        "        raise ValueError",
        "",
    ]
)


@pytest.fixture(scope="module")
def ex():
    with Executor(timeout_s=5.0, memory_mb=256, workers=2, tmpfs_mb=64) as executor:
        yield executor


def test_remove_tree_without_recursion(tmp_path) -> None:
    """Deeper than the recursion limit and than PATH_MAX, with files and a symlink out that must not be followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for i in range(3000):
        os.mkdir("dd", dir_fd=fd)
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd)) if i % 500 == 0 else None
        new = os.open("dd", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.symlink(outside, "link", dir_fd=fd)
    os.close(fd)
    remove_tree(str(root))
    assert not root.exists()
    assert (outside / "keep").read_text() == "x"
    remove_tree(str(root))  # a missing directory is not an error


def test_what_a_program_leaves_cannot_take_the_zygote_down(ex: Executor) -> None:
    before = set(ex.worker_pids())
    deep, many, after = ex.run_batch([DEEP_DIRS, MANY_FILES, "print('next')"])
    assert (deep.status, deep.output) == (ExecStatus.OK, "deep ok\n")
    # at most MAX_FILES entries at once: the program gets ENOSPC, the cleanup stays short
    assert many.status == ExecStatus.EXCEPTION and "No space left" in many.error, many
    assert after.ok and after.output == "next\n"
    assert set(ex.worker_pids()) == before  # no zygote died


def test_memfd_is_refused(ex: Executor) -> None:
    [r] = ex.run_batch(["import os\nos.memfd_create('x')"])
    assert r.status == ExecStatus.EXCEPTION and "PermissionError" in r.error


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        (HOSTILE_EXIT + "raise SystemExit(C())", False),
        ("raise SystemExit(False)", True),  # Python exits with status 0
        ("import sys\nsys.exit(0)", True),
        ("import sys\nsys.exit('')", False),
        ("import sys\nsys.exit(3)", False),
    ],
)
def test_system_exit_codes(ex: Executor, code: str, ok: bool) -> None:
    [r] = ex.run_batch([code])
    assert r.status == (ExecStatus.OK if ok else ExecStatus.EXCEPTION), r
    if not ok:
        assert r.error.startswith("SystemExit")


@pytest.mark.parametrize(
    "code",
    [
        "'y' * (20 << 20)",  # one write straddling the 16 MiB cap: a short write the program never sees fail
        "import os\ntry:\n    while True:\n        os.write(1, b'x' * 65536)\nexcept OSError:\n    pass",
        "import sys\nsys.stderr.write('e' * (20 << 20))",
    ],
)
def test_output_reaching_the_cap_is_an_output_limit(ex: Executor, code: str) -> None:
    [r] = ex.run_batch([code])
    assert r.status == ExecStatus.OUTPUT_LIMIT, r


def test_interpreter_level_streams_are_the_programs_output(ex: Executor) -> None:
    [r] = ex.run_batch(["import sys\nsys.__stdout__.write('A\\n')\nsys.__stderr__.write('E\\n')\nprint('B')"])
    assert r.ok and r.output == "A\nB\n"


def test_same_program_same_output_in_fresh_zygotes() -> None:
    """Object addresses (default repr, id(), sets of plain objects) do not change from one zygote to the next."""
    code = "print(object())\nprint(id([]) % 4096)"
    outputs = []
    for _ in range(2):
        with Executor(timeout_s=5.0, workers=1) as fresh:
            outputs.append(fresh.run_batch([code])[0].output)
    assert outputs[0] == outputs[1] and outputs[0].startswith("<object object at 0x")


def test_large_non_ascii_programs_and_outputs_do_not_block_the_pipes() -> None:
    """A request is up to 12 bytes per character on the pipe: pipelining counts bytes, not characters."""
    programs = [
        "import time\ntime.sleep(1)\nprint(0)",
        "import time\ntime.sleep(1)\nprint('\U0001f600' * 20000)",
        "s = '" + "\U0001f600" * 30000 + "'\nprint(len(s))",
        "print('c')",
    ]
    with (
        Executor(timeout_s=5.0, workers=1, max_output_chars=20000) as one,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        results = pool.submit(one.run_batch, programs).result(timeout=120)
    assert [r.status for r in results] == [ExecStatus.OK] * 4
    assert results[2].output == "30000\n" and results[3].output == "c\n"


def test_only_the_running_program_is_charged_for_a_dead_zygote() -> None:
    """When a zygote dies, the program it was running is charged an attempt, not those queued behind it: a
    program that already survived one death is reported INFRA_ERROR, the one queued behind it still runs."""
    with Executor(timeout_s=5.0, workers=1) as one:
        running = _Job("import time\ntime.sleep(1)", concurrent.futures.Future(), Flavour.LEAN, attempts=1)
        # queued for the other zygote of the slot, so the idle dispatcher runs it without racing this call
        queued = _Job("import numpy\nprint('innocent')", concurrent.futures.Future(), Flavour.HEAVY, attempts=1)
        assert one._recover(0, Flavour.LEAN, collections.deque([running, queued]), WorkerDied("test: died"))
        first, second = running.future.result(timeout=60), queued.future.result(timeout=60)
    assert first.status == ExecStatus.INFRA_ERROR and "died twice" in first.error
    assert second.ok and second.output == "innocent\n"
