"""The zygote: a single-threaded, pre-warmed process that forks one confined child per program.

Started by `Executor` as a fresh interpreter (never forked from the caller, which may run JAX threads) with a
scrubbed environment. At start-up it
1. reads its configuration message from fd 0;
2. enters a private network + mount namespace and mounts a size-capped tmpfs over its work root, where the
   kernel allows it;
3. pre-imports the configured modules (default numpy, scipy, sympy; warms sympy's caches), so children
   start hot; a zygote without numpy (the LEAN flavour, `routing.py`) seeds numpy.random when a program
   imports it, so every program sees the same random state in either flavour;
4. probes, in a throw-away child, which per-child layers the kernel accepts (capability drop, Landlock,
   seccomp) and reports them, with the namespace layers, in its "ready" message on fd 1.
Then, per request {"code": str} on fd 0, it forks a child (`child.run_child`), waits for it with a wall-clock
deadline (SIGKILL on expiry), reads its output, removes its work directory, kills any survivor it adopted
(it is a child subreaper) and answers one result message on fd 1. End of file on fd 0 ends the zygote.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import random
import select
import signal
import sys
import time
from typing import Any

from rstar_jax.execution import child, protocol, sandbox, seccomp
from rstar_jax.execution.result import ExecStatus, finalize_output

_REPORT_CAP = 1 << 16


class _SeedingLoader(importlib.abc.Loader):
    """Wraps the loader of `numpy.random`: seeds the legacy global RandomState right after the import."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        module.seed(0)

    def __getattr__(self, name: str) -> Any:  # resource readers etc. of the wrapped loader
        return getattr(self.inner, name)


class _SeedNumpyOnImport(importlib.abc.MetaPathFinder):
    """Meta-path finder of a zygote without numpy preloaded: a program importing numpy gets the same
    `numpy.random` state (seed 0) as in a zygote that preloaded it (numpy seeds itself from the OS)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "numpy.random":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SeedingLoader(spec.loader)
        return spec


def _preload(modules: list[str]) -> None:
    """Import `modules` (plus the small stdlib math modules) and warm sympy's caches when it is among them.

    Without numpy among them, `_SeedNumpyOnImport` seeds numpy.random when a program imports it."""
    random.seed(0)  # modules that draw at import (sympy's Dummy index base) do so alike in every zygote
    for name in ("math", "cmath", "fractions", "decimal", "itertools", "functools", "collections", "statistics"):
        importlib.import_module(name)
    for name in modules:
        importlib.import_module(name)
    if "sympy" in sys.modules:
        import sympy

        x, y = sympy.symbols("x y")
        sympy.solve([x + y - 10, x - y - 2], [x, y])
        sympy.solve(sympy.Eq(3 * x + 1, sympy.Rational(1, 7)), x)
        sympy.factor(x**2 - 5 * x + 6)
        sympy.simplify(sympy.sin(x) ** 2 + sympy.cos(x) ** 2)
        sympy.Rational(3, 4) + sympy.sqrt(8)
        sympy.expand((x + 1) ** 3)
        sympy.N(sympy.pi, 10)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)  # every child starts from this state (numpy does not reseed on fork)
    else:
        sys.meta_path.insert(0, _SeedNumpyOnImport())


def _probe_child(abi: int, work_root: str, readable: tuple[tuple[str, bool], ...], write_fd: int) -> int:
    """In a throw-away child: apply each per-child layer in turn and write which ones the kernel accepted."""
    try:
        found: dict[str, Any] = {"no_new_privs": False, "caps_dropped": False, "landlock_abi": 0, "seccomp": False}
        for name, step in (
            ("no_new_privs", sandbox.set_no_new_privs),
            ("caps_dropped", sandbox.drop_capabilities),
            ("landlock_abi", (lambda: sandbox.apply_landlock(abi, work_root, readable)) if abi else None),
            ("seccomp", (lambda: seccomp.SeccompFilter().install()) if seccomp.supported() else None),
        ):
            with contextlib.suppress(OSError):
                if step is not None and (name == "no_new_privs" or found["no_new_privs"]):
                    step()
                    found[name] = abi if name == "landlock_abi" else True
        os.write(write_fd, json.dumps(found).encode())
        return 0
    except BaseException:  # noqa: BLE001 - whatever happens, never return into the zygote's code
        return 1


def _probe_layers(work_root: str, readable: tuple[tuple[str, bool], ...]) -> dict[str, Any]:
    """Fork a throw-away child that tries each per-child layer; returns which ones the kernel accepted."""
    abi = sandbox.landlock_abi()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os._exit(_probe_child(abi, work_root, readable, write_fd))
    os.close(write_fd)
    data = os.read(read_fd, 4096)
    os.close(read_fd)
    os.waitpid(pid, 0)
    none = {"no_new_privs": False, "caps_dropped": False, "landlock_abi": 0, "seccomp": False}
    return json.loads(data) if data else none


def _sweep_adopted(busy: set[int]) -> None:
    """SIGKILL and reap every process re-parented to this zygote (as subreaper) that is not in `busy`."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in busy:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[1].decode() == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
                os.waitpid(int(entry), 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def remove_tree(path: str) -> None:
    """Delete the directory `path` and everything in it, never raising; no recursion, two open fds at most.

    A program may build a tree deeper than Python's recursion limit or PATH_MAX (5,000 nested `chdir`s), so
    instead of descending, every subdirectory found is renamed to the top of `path` and emptied from there.
    """
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    pending, moved = [""], 0  # names under `top` still to empty ("" is `top` itself)
    try:
        while pending:
            name = pending.pop()
            try:
                fd = os.open(name or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            except OSError:
                continue
            try:
                for entry in list(os.scandir(fd)):
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            moved += 1
                            os.rename(entry.name, f".rm{moved}", src_dir_fd=fd, dst_dir_fd=top)
                            pending.append(f".rm{moved}")
                        else:
                            os.unlink(entry.name, dir_fd=fd)
            finally:
                os.close(fd)
            if name:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
    except BaseException:  # noqa: BLE001 - cleanup must never take the zygote down
        pass
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)


class Zygote:
    """Fork-per-program server loop state (one instance per zygote process)."""

    def __init__(self, config: dict[str, Any], control_fd: int) -> None:
        self.control_fd = control_fd
        self.work_root: str = config["work_root"]
        self.max_output_chars: int = config["max_output_chars"]
        self.round_floats: bool = config["round_floats"]
        self.timeout_s: float = config["timeout_s"]
        self.counter = 0
        self.protections: dict[str, Any] = {"network_namespace": False, "tmpfs_mb": 0}
        try:
            sandbox.enter_namespaces()
            self.protections["network_namespace"] = True
            sandbox.mount_tmpfs(self.work_root, config["tmpfs_mb"])
            self.protections["tmpfs_mb"] = config["tmpfs_mb"]
        except OSError as exc:
            self.protections["namespace_error"] = str(exc)
        with contextlib.suppress(OSError):
            sandbox.set_child_subreaper()
        _preload(list(config["preload"]))
        self.streams = child.make_streams()
        # The interpreter's prefixes only (stdlib, site-packages): not sys.path, which under an editable install
        # holds the repository, whose data files (benchmark answers) a program must not read.
        readable = sandbox.readable_paths([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix])
        self.protections.update(_probe_layers(self.work_root, readable))
        self.child_cfg = child.ChildConfig(
            timeout_s=self.timeout_s,
            memory_mb=config["memory_mb"],
            file_size_mb=config["file_size_mb"],
            int_max_str_digits=config["int_max_str_digits"],
            use_landlock=self.protections["landlock_abi"],
            readable=readable,
            seccomp=seccomp.SeccompFilter() if self.protections["seccomp"] else None,
            drop_caps=self.protections["caps_dropped"],
        )
        gc.collect()
        gc.freeze()  # keep the warm heap out of the children's collections (fewer copy-on-write faults)

    def _read_capped(self, fd: int) -> tuple[bytes, bytes, int]:
        size = os.fstat(fd).st_size
        budget = 4 * self.max_output_chars + 4
        head = os.pread(fd, budget, 0)
        tail = os.pread(fd, budget, max(size - budget, 0)) if size > budget else b""
        return head, tail, size

    def run(self, code: str) -> dict[str, Any]:
        """Run one program in a fresh confined child; returns the result message."""
        self.counter += 1
        workdir = os.path.join(self.work_root, f"p{self.counter}")
        os.mkdir(workdir, 0o700)
        fds = [os.memfd_create(name, 0) for name in ("stdout", "stderr", "report")]
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                for target, fd in zip((1, 2, 3), fds, strict=True):
                    os.dup2(fd, target)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                child.run_child(code, workdir, self.child_cfg, os.getppid(), self.streams)
            finally:
                os._exit(child.EXIT_SETUP_FAILED)  # never fall back into the zygote loop
        timed_out = self._wait(pid, start)
        seconds = time.monotonic() - start
        if not self.protections["seccomp"]:  # forks were possible: kill the group (the zombie keeps its id)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
        if not self.protections["seccomp"]:
            _sweep_adopted(busy=set())
        out = self._read_capped(fds[0])
        err_size = os.fstat(fds[1]).st_size
        report_bytes = os.pread(fds[2], _REPORT_CAP, 0)
        for fd in fds:
            os.close(fd)
        try:
            os.rmdir(workdir)
        except OSError:
            remove_tree(workdir)
        status, error = self._classify(timed_out, wait_status, report_bytes, max(out[2], err_size))
        output = finalize_output(*out, max_chars=self.max_output_chars, round_floats=self.round_floats)
        return {"status": status, "error": error, "output": output, "seconds": seconds}

    def _wait(self, pid: int, start: float) -> bool:
        """Wait for `pid` until the deadline; SIGKILL it on expiry. Exits the zygote if the parent is gone."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(self.control_fd, 0)  # POLLHUP / POLLERR only: the executor closed our input
        try:
            while True:
                remaining = self.timeout_s - (time.monotonic() - start)
                if remaining <= 0:
                    os.kill(pid, signal.SIGKILL)
                    return True
                for fd, events in poller.poll(remaining * 1000):
                    if fd == pidfd:
                        return False
                    if events & (select.POLLHUP | select.POLLERR):
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        sys.exit(0)
        finally:
            os.close(pidfd)

    def _classify(self, timed_out: bool, wait_status: int, report_bytes: bytes, written: int) -> tuple[str, Any]:
        """Map (deadline, wait status, child report) to (ExecStatus value, error line or None)."""
        if timed_out:
            return ExecStatus.TIMEOUT.value, "timeout"
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            if sig == signal.SIGXCPU:
                return ExecStatus.TIMEOUT.value, "timeout (cpu limit)"
            if sig == signal.SIGXFSZ:
                return ExecStatus.OUTPUT_LIMIT.value, "output limit"
            return ExecStatus.CRASH.value, "killed" if sig == signal.SIGKILL else f"killed by signal {_signame(sig)}"
        code = os.WEXITSTATUS(wait_status)
        try:
            report = json.loads(report_bytes) if code in (0, child.EXIT_SETUP_FAILED) else None
            status, error = ExecStatus(report["status"]).value, report["error"]
        except (ValueError, TypeError, KeyError):
            return ExecStatus.CRASH.value, f"exited without finishing (exit code {code})"
        if status in (ExecStatus.OK.value, ExecStatus.EXCEPTION.value) and written >= self.file_size_bytes:
            return ExecStatus.OUTPUT_LIMIT.value, "output limit"  # also a short write the program never saw fail
        if status == ExecStatus.OK.value:
            return status, None
        return status, str(error)[:1000]

    @property
    def file_size_bytes(self) -> int:
        return self.child_cfg.file_size_mb << 20


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def main() -> None:
    """Zygote entry point: fds 0/1 are the executor's request/response pipes."""
    if sandbox.disable_aslr():  # once, before anything: the same heap addresses in every zygote of a flavour
        os.execv(sys.executable, sys.orig_argv)
    control_fd, reply_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the executor owns our lifetime (SIGKILL / end of input)
    try:
        config = protocol.read_message(control_fd)
        try:
            zygote = Zygote(config, control_fd)
        except Exception as exc:  # noqa: BLE001 - reported to the executor, which raises it
            protocol.write_message(reply_fd, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        protocol.write_message(reply_fd, {"ready": True, "pid": os.getpid(), "protections": zygote.protections})
        while True:
            request = protocol.read_message(control_fd)
            protocol.write_message(reply_fd, zygote.run(str(request["code"])))
    except protocol.ChannelClosed:
        return


if __name__ == "__main__":
    main()
