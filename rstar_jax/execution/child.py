"""What runs inside one forked child of a zygote: confine the process, run one program, report, exit.

Program semantics (the rule documented on `ExecResult.output`):
- the program is compiled as a module and executed in a fresh `__main__` namespace; nothing survives it,
  because the child is a fork of a clean zygote and exits afterwards;
- if its last top-level statement is a bare expression, that expression is evaluated separately and, when
  its value is not None, `str(value)` is written to stdout on its own line (the reference prints the value
  of a trailing expression; unlike the reference, stdout written earlier is kept and nothing runs twice);
- `SystemExit` with code 0 or None ends the program successfully; any other `BaseException` is reported as
  one line "TypeName: message" (`MemoryError` as "memory limit").

The report is a small JSON object written to fd 3 (an anonymous memory file read by the zygote after the
child is reaped); a program can overwrite its own report, which only lets it lie about itself.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import io
import json
import os
import random
import resource
import signal
import sys
from typing import Any, NoReturn

from rstar_jax.execution import sandbox, seccomp

_STDOUT_FD, _STDERR_FD, _REPORT_FD = 1, 2, 3
_MAX_ERROR_CHARS = 400
_EXIT_REPORTED, EXIT_SETUP_FAILED, _EXIT_NO_REPORT = 0, 70, 71
_OK = {"status": "ok", "error": None}
_OK_REPORT = json.dumps(_OK).encode()  # encoded once in the zygote: the common case skips json in the child


@dataclasses.dataclass(frozen=True, slots=True)
class ChildConfig:
    """Limits and confinement layers for every child of one zygote (fixed at zygote start).

    Attributes:
      timeout_s: wall-clock budget; RLIMIT_CPU is set to int(timeout_s) + 2 seconds as a backstop.
      memory_mb: address-space budget on top of the child's size at fork (RLIMIT_AS).
      file_size_mb: RLIMIT_FSIZE: the cap on stdout, stderr and any file the program writes.
      int_max_str_digits: `sys.set_int_max_str_digits` for the program (0 = unlimited).
      use_landlock: Landlock ABI version to apply (0 = layer not in force).
      readable: (path, is_directory) read roots for Landlock (`sandbox.readable_paths`).
      seccomp: the pre-assembled seccomp filter to install (None = layer not in force).
      drop_caps: drop all capabilities (as root: CAP_SYS_RESOURCE, CAP_KILL...; in a user namespace: its own).
    """

    timeout_s: float
    memory_mb: int
    file_size_mb: int
    int_max_str_digits: int
    use_landlock: int
    readable: tuple[tuple[str, bool], ...]
    seccomp: seccomp.SeccompFilter | None
    drop_caps: bool


def _one_line(exc: BaseException) -> str:
    """ "TypeName: message" on one line, bounded; never raises."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not break reporting
        message = "<unprintable message>"
    message = " ".join(message.split())[:_MAX_ERROR_CHARS]
    return f"{name}: {message}" if message else name


def _confine(cfg: ChildConfig, workdir: str, zygote_pid: int) -> None:
    """Apply process, fd, environment, rlimit and kernel confinement, in that order."""
    os.setsid()
    sandbox.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died between fork and prctl
        os._exit(EXIT_SETUP_FAILED)
    os.closerange(_REPORT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    page = os.sysconf("SC_PAGE_SIZE")
    statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)  # no io stack: cheaper in a fresh fork
    try:
        vm_bytes = int(os.read(statm, 256).split()[0]) * page
    finally:
        os.close(statm)
    cpu = int(cfg.timeout_s) + 2
    fsize = cfg.file_size_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes + (cfg.memory_mb << 20),) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.use_landlock or cfg.seccomp is not None:
        sandbox.set_no_new_privs()
    if cfg.drop_caps:
        sandbox.drop_capabilities()
    if cfg.use_landlock:
        sandbox.apply_landlock(cfg.use_landlock, workdir, cfg.readable)
    if cfg.seccomp is not None:
        cfg.seccomp.install()


def make_streams() -> tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]:
    """Unused (stdin, stdout, stderr) text streams on fds 0, 1, 2, built once in the zygote for its children.

    stdout and stderr are line-buffered UTF-8, so output survives a later kill up to the last full line.
    """
    stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    out = io.TextIOWrapper(io.FileIO(_STDOUT_FD, "w", closefd=False), encoding="utf-8", line_buffering=True)
    err = io.TextIOWrapper(io.FileIO(_STDERR_FD, "w", closefd=False), encoding="utf-8", line_buffering=True)
    return stdin, out, err


def execute(code: str, stdout: io.TextIOBase) -> dict[str, Any]:
    """Run `code` as `__main__` in a fresh namespace; returns the report {"status", "error"}.

    Statuses: "ok", "exception", "memory". See the module docstring for the trailing-expression rule.
    """
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        tree = ast.parse(code, filename="<program>")
        tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<program>", "exec"), namespace)  # noqa: S102 - confined child process
        if tail is not None:
            expr = ast.Expression(tail.value)
            value = eval(compile(expr, "<program>", "eval"), namespace)  # noqa: S307
            if value is not None:
                stdout.write(f"{value}\n")
        stdout.flush()
    except SystemExit as exc:
        code = exc.code  # compared without calling the program's own __eq__ / __str__
        if not (code is None or (isinstance(code, int) and int.__eq__(code, 0) is True)):
            return {"status": "exception", "error": _one_line(exc)}
    except MemoryError:
        return {"status": "memory", "error": "memory limit"}
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt etc. are the program's own errors
        return {"status": "exception", "error": _one_line(exc)}
    return _OK


def run_child(
    code: str,
    workdir: str,
    cfg: ChildConfig,
    zygote_pid: int,
    streams: tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper],
) -> NoReturn:
    """Entry point in the forked child. fds 0-3 are already /dev/null, stdout, stderr and report memfds.

    `streams` come from `make_streams`. `numpy.random` was seeded in the zygote before the fork; `random`
    reseeds itself from the OS after every fork, so it is seeded here: every program starts from the same state.
    """
    try:
        _confine(cfg, workdir, zygote_pid)
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # the zygote's own would buffer and be lost
        sys.argv = ["<program>"]
        _, stdout, stderr = streams
        sys.set_int_max_str_digits(cfg.int_max_str_digits)
        random.seed(0)
    except BaseException as exc:  # noqa: BLE001
        report = {"status": "infra_error", "error": f"sandbox set-up failed: {_one_line(exc)}"}
        os.pwrite(_REPORT_FD, json.dumps(report).encode(), 0)
        os._exit(EXIT_SETUP_FAILED)
    report = execute(code, stdout)
    for stream in (stdout, stderr):
        with contextlib.suppress(BaseException):  # output over the cap or a closed fd: already reported
            stream.flush()
    try:
        os.ftruncate(_REPORT_FD, 0)
        os.pwrite(_REPORT_FD, _OK_REPORT if report is _OK else json.dumps(report).encode(), 0)
    except BaseException:  # noqa: BLE001 - the program closed or replaced fd 3
        os._exit(_EXIT_NO_REPORT)
    os._exit(_EXIT_REPORTED)
