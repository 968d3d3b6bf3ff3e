"""The hostile battery: model-written programs that try to escape, hang, exhaust or corrupt the executor.

The whole battery runs as one batch (in parallel, like the search does); each case then checks its status
and, where it matters, its output. It runs twice: with LEAN + HEAVY zygotes (the default; stdlib-only
programs run in the LEAN one) and with HEAVY zygotes only. Afterwards: the test process is unharmed, the
sentinel files outside the executor's temporary directories are unchanged, no program process survives,
and a normal program still runs correctly.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import os
import signal
import sys
from collections.abc import Callable

import pytest

from rstar_jax.execution import ExecResult, ExecStatus, Executor

OK, EXC, TIMEOUT, MEMORY = ExecStatus.OK, ExecStatus.EXCEPTION, ExecStatus.TIMEOUT, ExecStatus.MEMORY
OUTPUT_LIMIT, CRASH = ExecStatus.OUTPUT_LIMIT, ExecStatus.CRASH
SECRET = "rstar-test-secret-0123456789"
TIMEOUT_S = 3.0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    code: str
    status: ExecStatus
    check: Callable[[ExecResult], bool] | None = None


def _cases(sent: str, pid: int) -> list[Case]:
    """`sent`: a directory of sentinel files outside the executor; `pid`: this test process."""
    f = f"{sent}/keep.txt"
    return [
        Case("infinite_loop", "while True:\n    pass", TIMEOUT),
        Case("sleep", "import time\ntime.sleep(100)", TIMEOUT),
        Case(
            "sleep_swallowing_everything",
            "import time\nwhile True:\n    try:\n        time.sleep(0.2)\n    except BaseException:\n        pass",
            TIMEOUT,
        ),
        Case(
            "signal_handlers_ignored",
            "import signal, time\nfor s in (signal.SIGALRM, signal.SIGTERM, "
            "signal.SIGINT, signal.SIGXCPU):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
            TIMEOUT,
        ),
        Case("list_growth", "x = []\nwhile True:\n    x.append(' ' * 10**6)", MEMORY),
        Case("bytearray_100gb", "bytearray(10**11)", MEMORY),
        Case("numpy_alloc", "import numpy as np\nnp.ones(10**10)", MEMORY),
        Case("fork_bomb", "import os\nwhile True:\n    os.fork()", EXC, lambda r: "PermissionError" in r.error),
        Case(
            "os_system",
            f"import os\nprint(os.system('echo pwned > {sent}/pwned'))",
            OK,
            lambda r: r.output.strip() != "0",
        ),
        Case("subprocess_run", "import subprocess\nsubprocess.run(['echo', 'hi'])", EXC),
        Case(
            "subprocess_detached", "import subprocess\nsubprocess.Popen(['sleep', '30'], start_new_session=True)", EXC
        ),
        Case("posix_spawn", "import os\nos.posix_spawn('/bin/true', ['true'], {})", EXC),
        Case(
            "raw_fork_syscall", "import ctypes\nprint(ctypes.CDLL(None).syscall(57))", OK, lambda r: r.output == "-1\n"
        ),
        Case(
            "kill_self",
            "import os, signal\nprint('bye')\nos.kill(os.getpid(), signal.SIGKILL)",
            CRASH,
            lambda r: r.error == "killed" and r.output == "bye\n",
        ),
        Case("multiprocessing", "import multiprocessing as mp\np = mp.Process(target=print)\np.start()", EXC),
        Case("write_outside", f"open('{sent}/new.txt', 'w').write('x')", EXC),
        Case("overwrite_outside", f"open('{f}', 'w').write('gone')", EXC),
        Case("append_outside", f"open('{f}', 'a').write('more')", EXC),
        Case("truncate_outside", f"import os\nos.truncate('{f}', 0)", EXC),
        Case("delete_outside", f"import os\nos.remove('{f}')", EXC),
        Case("rmtree_outside", f"import shutil\nshutil.rmtree('{sent}')", EXC),
        Case("rename_outside", f"import os\nos.rename('{f}', 'stolen.txt')", EXC),
        Case("hardlink_outside", f"import os\nos.link('{f}', 'link.txt')", EXC),
        Case("chmod_outside", f"import os\nos.chmod('{f}', 0o777)", EXC),
        Case("utime_outside", f"import os\nos.utime('{f}', (0, 0))", EXC),
        Case("write_tmp_and_shm", "open('/tmp/rstar_pwned', 'w').write('x')", EXC),
        Case(
            "write_own_cwd",
            "open('a.txt', 'w').write('hi')\nprint(open('a.txt').read())",
            OK,
            lambda r: r.output == "hi\n",
        ),
        Case("read_outside", f"print(open('{f}').read())", EXC, lambda r: "Permission denied" in r.error),
        Case("read_repository", f"print(open('{REPO}/rstar_jax/execution/__init__.py').read())", EXC),
        Case("read_shadow", "print(open('/etc/shadow').read())", EXC),
        Case("read_other_cmdline", "print(open('/proc/1/cmdline').read())", EXC),
        Case("list_root_dir", "import os\nprint(os.listdir('/'))", EXC),
        Case(
            "read_own_proc", "print(open('/proc/self/status').read().split()[0])", OK, lambda r: r.output == "Name:\n"
        ),
        Case(
            "lazy_import_allowed",
            "import scipy.optimize\nprint(round(scipy.optimize.brentq(lambda t: t * t - 2, 0, 2), 6))",
            OK,
            lambda r: r.output == "1.414214\n",
        ),
        Case("read_env", "import os\nprint(dict(os.environ))", OK, lambda r: SECRET not in r.output),
        Case("read_parent_environ", f"print(open('/proc/{pid}/environ', 'rb').read())", EXC),
        Case("kill_parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", EXC),
        Case("kill_test_process", f"import os, signal\nos.kill({pid}, signal.SIGTERM)", EXC),
        Case("kill_everything", "import os, signal\nos.kill(-1, signal.SIGKILL)", EXC),
        Case("lower_parent_rlimit", f"import resource\nresource.prlimit({pid}, resource.RLIMIT_NOFILE, (3, 3))", EXC),
        Case("raise_own_rlimit", "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", EXC),
        Case(
            "ptrace_parent",
            f"import ctypes\nprint(ctypes.CDLL(None).ptrace(16, {pid}, 0, 0))",
            OK,
            lambda r: r.output.strip() == "-1",
        ),
        Case("socket_tcp", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)", EXC),
        Case(
            "socket_udp",
            "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))",
            EXC,
        ),
        Case(
            "socket_unix_pair_allowed",
            "import socket\na, b = socket.socketpair()\na.send(b'ok')\nprint(b.recv(2).decode())",
            OK,
            lambda r: r.output == "ok\n",
        ),
        Case(
            "sys_exit_3",
            "import sys\nprint('before')\nsys.exit(3)",
            EXC,
            lambda r: r.error == "SystemExit: 3" and r.output == "before\n",
        ),
        Case("sys_exit_0", "import sys\nprint('done')\nsys.exit(0)", OK, lambda r: r.output == "done\n"),
        Case("raise_system_exit", "raise SystemExit", OK),
        Case("raise_system_exit_2", "raise SystemExit(2)", EXC),
        Case("keyboard_interrupt", "raise KeyboardInterrupt", EXC, lambda r: r.error == "KeyboardInterrupt"),
        Case("os_exit_0", "import os\nos._exit(0)", CRASH),
        Case("os_exit_5", "import os\nos._exit(5)", CRASH),
        Case("deep_recursion", "def f(n):\n    return f(n + 1)\nf(0)", EXC, lambda r: "RecursionError" in r.error),
        Case(
            "deep_c_recursion",
            # the C pickler recurses once per level with O(1) work (repr's Py_ReprEnter scans a list per level:
            # O(depth^2), seconds under load); it overflows the C stack in well under a second
            "import pickle, sys\nsys.setrecursionlimit(10**8)\nx = []\n"
            "for _ in range(1_000_000):\n    x = [x]\npickle.dumps(x)",
            CRASH,
            lambda r: "SIGSEGV" in r.error,
        ),
        Case("segfault", "import ctypes\nctypes.string_at(0)", CRASH, lambda r: "SIGSEGV" in r.error),
        Case(
            "print_gigabytes",
            "while True:\n    print('x' * 10**6)",
            OUTPUT_LIMIT,
            lambda r: len(r.output) <= 1024 + 3 and r.output.startswith("x"),
        ),
        Case("big_file", "open('big.bin', 'wb').write(b'0' * (64 << 20))", EXC, lambda r: "File too large" in r.error),
        Case(
            "fill_tmpfs",
            "for i in range(64):\n    open(f'f{i}', 'wb').write(b'0' * (8 << 20))",
            EXC,
            lambda r: "No space left" in r.error,
        ),
        Case(
            "binary_junk", "import sys\nsys.stdout.buffer.write(bytes(range(256)))", OK, lambda r: "\ufffd" in r.output
        ),
        Case(
            "raw_fd_write",
            "import os\nos.write(1, b'raw \\xff\\xfe bytes\\n')",
            OK,
            lambda r: r.output == "raw \ufffd\ufffd bytes\n13\n",
        ),  # trailing expression: os.write's value
        Case(
            "threads_left_running",
            "import threading, time\ndef spin():\n    while True:\n        time.sleep(0.01)\n"
            "for _ in range(4):\n    threading.Thread(target=spin).start()\nprint('main done')",
            OK,
            lambda r: r.output == "main done\n",
        ),
        Case(
            "thread_bomb",
            "import threading, time\nfor _ in range(100000):\n"
            "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
            EXC,
        ),
        Case("change_cwd", "import os\nos.chdir('/')\nprint(os.getcwd())", OK, lambda r: r.output == "/\n"),
        Case(
            "poison_builtins",
            "import builtins\nbuiltins.abs = lambda v: 0\nbuiltins.print = None\nimport math\nmath.pi = 3",
            OK,
        ),
        Case("huge_power", "10**10**8", TIMEOUT),
        Case(
            "sympy_never_finishes",
            "import sympy\nsympy.factorint(sympy.nextprime(10**40) * sympy.nextprime(10**41))",
            TIMEOUT,
        ),
        Case(
            "alarm_default_action",
            "import signal\nsignal.alarm(1)\nsignal.pause()",
            CRASH,
            lambda r: "SIGALRM" in r.error,
        ),
        Case("input_eof", "input()", EXC, lambda r: r.error.startswith("EOFError")),
        Case("huge_error_message", "raise ValueError('v' * 10**6)", EXC, lambda r: len(r.error) < 500),
        Case(
            "unprintable_exception",
            "class E(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise E()",
            EXC,
            lambda r: r.error == "E: <unprintable message>",
        ),
        Case("close_report_fd", "import os\nos.close(3)", CRASH),
        Case("syntax_error", "print((1)", EXC, lambda r: r.error.startswith("SyntaxError")),
        Case("big_int_print", "print(len(str(10**5000)))", OK, lambda r: r.output == "5001\n"),
    ]


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sentinel")
    (root / "keep.txt").write_text("precious\n")
    (root / "sub").mkdir()
    (root / "sub" / "also.txt").write_text("also precious\n")
    return str(root)


def _snapshot(root: str) -> dict[str, tuple[str, int, float]]:
    """Per path under root: (sha256 of content, mode, mtime)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = "dir"
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            snap[path] = (digest, st.st_mode, st.st_mtime)
    return snap


def _program_processes(work_root: str, exclude: set[int]) -> list[int]:
    """Pids (not in `exclude`) whose working directory lies under `work_root`: program processes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in exclude:
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd.startswith(work_root):
                found.append(int(entry))
    return found


@pytest.fixture(scope="module", params=[True, False], ids=["lean_and_heavy", "heavy_only"])
def battery(sentinel: str, request: pytest.FixtureRequest):
    os.environ["RSTAR_TEST_SECRET"] = SECRET
    before = _snapshot(sentinel)
    cases = _cases(sentinel, os.getpid())
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    cwd = os.getcwd()
    with Executor(timeout_s=TIMEOUT_S, memory_mb=256, workers=2, tmpfs_mb=64, lean_zygotes=request.param) as ex:
        results = ex.run_batch([c.code for c in cases])
        state = {
            "after_results": ex.run_batch(
                ["print(abs(-5))\nimport math\nprint(math.pi > 3.14)", "import os\nprint(os.getcwd())"]
            ),
            "work_root": ex.work_root,
            "zygotes": set(ex.worker_pids()),
            "idle_programs": _program_processes(ex.work_root, set(ex.worker_pids())),
        }
    del os.environ["RSTAR_TEST_SECRET"]
    state |= {
        "cases": cases,
        "results": results,
        "before": before,
        "after": _snapshot(sentinel),
        "handlers": handlers,
        "cwd": cwd,
    }
    return state


def test_battery_is_large_enough(battery) -> None:
    assert len(battery["cases"]) >= 40
    assert len({c.name for c in battery["cases"]}) == len(battery["cases"])


@pytest.mark.parametrize("index", range(len(_cases("/s", 1))))
def test_hostile_case(battery, index: int) -> None:
    case, result = battery["cases"][index], battery["results"][index]
    assert result.status == case.status, f"{case.name}: {result}"
    assert result.ok == (case.status == OK)
    if case.check is not None:
        assert case.check(result), f"{case.name}: {result}"


def test_test_process_unharmed(battery) -> None:
    assert abs(-5) == 5 and builtins.print is not None
    assert os.getcwd() == battery["cwd"]
    for sig, handler in battery["handlers"].items():
        assert signal.getsignal(sig) is handler
    assert sys.stdout is not None


def test_no_file_outside_changed(battery, sentinel: str) -> None:
    assert battery["after"] == battery["before"]
    assert not os.path.exists(os.path.join(sentinel, "pwned"))
    assert not os.path.exists("/tmp/rstar_pwned")


def test_no_program_process_survives(battery) -> None:
    assert battery["idle_programs"] == []  # between batches: only the zygotes
    for pid in battery["zygotes"]:
        assert not os.path.exists(f"/proc/{pid}"), f"zygote {pid} still alive after close()"
    assert _program_processes(battery["work_root"], exclude=set()) == []
    assert not os.path.exists(battery["work_root"])


def test_normal_program_after_battery(battery) -> None:
    fresh, cwd = battery["after_results"]
    assert fresh.ok and fresh.output == "5\nTrue\n"  # builtins and modules poisoned earlier are pristine
    assert cwd.ok and cwd.output.strip().startswith(battery["work_root"])
