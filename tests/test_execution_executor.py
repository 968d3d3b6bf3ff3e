"""Executor semantics: output rules, ordering, memoisation, determinism, threads, worker loss, shutdown."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from rstar_jax.execution import ExecResult, ExecStatus, Executor


@pytest.fixture(scope="module")
def ex():
    with Executor(timeout_s=3.0, memory_mb=512, workers=2) as executor:
        yield executor


def _one(ex: Executor, code: str) -> ExecResult:
    return ex.run_batch([code])[0]


@pytest.mark.parametrize(
    ("code", "output"),
    [
        ("print(1 + 1)", "2\n"),
        ("x = 2\nx * 3", "6\n"),  # trailing expression value (reference: eval of the last statement)
        ("y = 2 * 3", ""),  # no print, last statement not an expression
        ("print('a')\n'b'", "a\nb\n"),  # stdout kept, then str(value) of the trailing expression
        ("print('a')\nNone", "a\n"),  # a None value adds nothing
        ("def f():\n    print('inside')\nf()", "inside\n"),  # prints inside functions are captured
        ("print(1)\ny = 1", "1\n"),  # statements after the last print do run (reference bug fixed)
        ("import sympy\nx = sympy.symbols('x')\nsympy.solve(x**2 - 4, x)", "[-2, 2]\n"),
        ("import numpy as np\nprint(np.arange(4).sum())", "6\n"),
        ("import scipy.special\nprint(scipy.special.comb(5, 2, exact=True))", "10\n"),
        ("'text'", "text\n"),  # str(), not repr(), as the reference
        ("print('é ü')", "é ü\n"),
    ],
)
def test_output_rules(ex: Executor, code: str, output: str) -> None:
    result = _one(ex, code)
    assert result.ok and result.status == ExecStatus.OK and result.error is None
    assert result.output == output
    assert result.seconds > 0


def test_error_is_one_line_and_partial_output_kept(ex: Executor) -> None:
    result = _one(ex, "print('partial')\nraise ValueError('bad\\nvalue')")
    assert not result.ok and result.status == ExecStatus.EXCEPTION
    assert result.error == "ValueError: bad value" and result.output == "partial\n"
    assert result.observation == "ValueError: bad value"


def test_name_error_no_state_leaks_between_programs(ex: Executor) -> None:
    first, second = ex.run_batch(["leak = 41\nprint(leak)", "print(leak)"])
    assert first.output == "41\n"
    assert second.status == ExecStatus.EXCEPTION and second.error == "NameError: name 'leak' is not defined"


def test_printing_error_word_is_not_an_error(ex: Executor) -> None:
    result = _one(ex, "rel_error = 0.5\nprint('rel error', rel_error)")
    assert result.ok and result.output == "rel error 0.5\n"


def test_order_and_memoisation(ex: Executor) -> None:
    programs = ["import random\nprint(random.random())", "print(2)", "import random\nprint(random.random())"]
    results = ex.run_batch(programs)
    assert [r.output for r in results][1] == "2\n"
    assert results[0] is results[2]  # identical programs ran once, result shared


def test_results_independent_of_batch_and_worker(ex: Executor) -> None:
    probe = "import random, numpy as np\nprint(random.random(), np.random.rand(), {'b', 'a', 'c'})"
    alone = _one(ex, probe)
    fillers = [f"print({i})" for i in range(12)]
    mixed = ex.run_batch(fillers[:5] + [probe] + fillers[5:])[5]
    again = ex.run_batch(fillers[::-1] + [probe])[-1]
    assert alone.ok and alone.output == mixed.output == again.output


def test_thread_safe_concurrent_batches(ex: Executor) -> None:
    def batch(k: int) -> list[str]:
        return [r.output for r in ex.run_batch([f"print({k} * 100 + {i})" for i in range(10)])]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(batch, range(8)))
    assert outs == [[f"{k * 100 + i}\n" for i in range(10)] for k in range(8)]


def test_program_too_long_is_refused(ex: Executor) -> None:
    result = _one(ex, "x = 1\n" * 50_000)
    assert result.status == ExecStatus.EXCEPTION and "program too long" in result.error


def test_rejects_non_string_programs(ex: Executor) -> None:
    with pytest.raises(TypeError, match=r"programs\[1\]"):
        ex.run_batch(["print(1)", b"print(2)"])  # type: ignore[list-item]


def test_protections_reported(ex: Executor) -> None:
    assert set(ex.protections) >= {"network_namespace", "landlock_abi", "seccomp", "caps_dropped", "tmpfs_mb"}


def test_dead_worker_is_replaced_and_batch_completes() -> None:
    with Executor(timeout_s=2.0, workers=1) as ex:
        old = ex.worker_pids()  # [HEAVY, LEAN]
        assert len(old) == 2
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        results = ex.run_batch(["print(7)", "import numpy\nprint(8)"])  # one program per flavour
        assert [r.output for r in results] == ["7\n", "8\n"]
        assert not set(ex.worker_pids()) & set(old)


def test_worker_killed_mid_program_still_returns_a_result() -> None:
    with Executor(timeout_s=5.0, workers=1) as ex:
        [_, lean] = ex.worker_pids()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(ex.run_batch, ["import time\ntime.sleep(1)\nprint('slept')"])  # stdlib: LEAN
            time.sleep(0.3)
            os.kill(lean, signal.SIGKILL)
            [result] = future.result(timeout=60)
        assert result.ok and result.output == "slept\n"  # retried once on the fresh zygote


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def test_close_leaves_no_process_even_mid_program() -> None:
    before = _descendants(os.getpid())
    ex = Executor(timeout_s=30.0, workers=2)
    zygotes = set(ex.worker_pids())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(ex.run_batch, ["import time\ntime.sleep(20)", "while True:\n    pass"])
        time.sleep(0.5)
        assert len(_descendants(os.getpid()) - before) >= 4  # two zygotes, two running programs
        ex.close()
        results = future.result(timeout=60)
    assert [r.status for r in results] == [ExecStatus.INFRA_ERROR] * 2
    assert all(not os.path.exists(f"/proc/{pid}") for pid in zygotes)
    assert _descendants(os.getpid()) - before == set()
    assert not os.path.exists(ex.work_root)
    with pytest.raises(RuntimeError, match="closed"):
        ex.run_batch(["print(1)"])


def test_round_floats_switch() -> None:
    code = "print(1 / 3)"
    with Executor(timeout_s=2.0, workers=1, round_floats=True) as rounding:
        assert rounding.run_batch([code])[0].output == "0.3333\n"
    with Executor(timeout_s=2.0, workers=1, max_output_chars=10) as short:
        assert short.run_batch([code])[0].output == "0.333...3333\n"  # 5 + "..." + 5


@pytest.mark.parametrize("bad", [{"timeout_s": 0}, {"workers": 0}, {"memory_mb": -1}, {"int_max_str_digits": 5}])
def test_invalid_settings_raise(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Executor(**bad)


_PARENT_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from rstar_jax.execution import Executor
ex = Executor(timeout_s=60.0, workers=2)
print(*ex.worker_pids(), ex.work_root, flush=True)
ex.run_batch(["import time\\ntime.sleep(60)", "while True:\\n    pass"])
"""


def _cwd_under(root: str) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd").startswith(root):
                    found.add(int(entry))
            except OSError:
                continue
    return found


def test_parent_sigkill_leaves_no_orphan() -> None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", _PARENT_SCRIPT, repo], stdout=subprocess.PIPE, text=True)
    *zygotes, work_root = parent.stdout.readline().split()
    deadline = time.monotonic() + 30
    expected = len(zygotes) + 2  # 2 slots x (HEAVY + LEAN) zygotes + 2 running programs
    while len(_cwd_under(work_root)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    running = _cwd_under(work_root)
    assert len(zygotes) == 4 and {int(z) for z in zygotes} < running and len(running) == expected
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in running)
    # Nobody is left to remove the killed parent's root (it held the programs' directories, checked above), but the
    # next executor does: this one, or one another test process starts meanwhile (so no check in between).
    live = tempfile.mkdtemp(prefix=f"rstar_exec.{os.getpid()}.")  # a root of a process that still runs
    try:
        ex = Executor(workers=1)
        try:
            assert os.path.basename(ex.work_root).startswith(f"rstar_exec.{os.getpid()}.")
            assert not os.path.exists(work_root)
            assert os.path.isdir(live)
        finally:
            ex.close()
        assert not os.path.exists(ex.work_root)
    finally:
        shutil.rmtree(live, ignore_errors=True)


def test_interpreter_exit_without_close_leaves_no_process() -> None:
    script = (
        "import sys\nsys.path.insert(0, sys.argv[1])\nfrom rstar_jax.execution import Executor\n"
        "ex = Executor(workers=2)\nassert ex.run_batch(['print(1)'])[0].ok\nprint(*ex.worker_pids(), flush=True)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script, repo], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 4 and not any(os.path.exists(f"/proc/{pid}") for pid in pids)


_NON_ROOT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from rstar_jax.execution import Executor
with Executor(timeout_s=2.0, workers=1) as ex:
    results = ex.run_batch([
        "import os\\nprint(os.getuid())",
        "import os\\nos.fork()",
        "import socket\\nsocket.socket(socket.AF_INET)",
        "open('/tmp/rstar_nonroot_pwned', 'w')",
    ])
    print(json.dumps({"protections": ex.protections, "statuses": [r.status.value for r in results],
                      "uid": results[0].output}))
"""


def _can_map_user() -> bool:
    try:
        probe = ["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_map_user(), reason="needs unshare(1) >= 2.38 and user namespaces")
def test_non_root_caller_gets_the_same_protections() -> None:
    # Runs the executor as uid 1000 inside a user namespace: the unprivileged path of sandbox.enter_namespaces.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["unshare", "--user", "--map-user=1000", "--map-group=1000", sys.executable, "-c", _NON_ROOT_SCRIPT, repo]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    p = report["protections"]
    assert p["network_namespace"] and p["tmpfs_mb"] and p["landlock_abi"] and p["seccomp"] and p["caps_dropped"]
    assert report["statuses"] == ["ok", "exception", "exception", "exception"] and report["uid"] == "1000\n"
    assert not os.path.exists("/tmp/rstar_nonroot_pwned")
