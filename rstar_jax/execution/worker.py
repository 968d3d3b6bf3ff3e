"""Parent-side handle of one zygote process: start it, pipeline requests to it, kill it.

The zygote is a fresh interpreter (`python -s -c <bootstrap>`), never a fork of the caller (which may run JAX
threads), started with a scrubbed environment: no variable of the caller (tokens, credentials, paths) is
visible to it or to the programs it forks. Requests are answered in order, so several may be in flight.

An executor's zygotes work under one root, `<tmp>/rstar_exec.<pid>.<random>` (`make_work_root`), removed when the
executor closes or its process exits; a process killed with SIGKILL cannot, so each new root first removes the roots
whose process no longer runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from rstar_jax.execution import protocol

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../rstar_jax
# Imports rstar_jax.execution.zygote without running rstar_jax/__init__.py (which may import JAX).
_BOOTSTRAP = (
    "import sys, types; pkg = types.ModuleType('rstar_jax'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['rstar_jax'] = pkg; from rstar_jax.execution.zygote import main; main()"
)
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "JAX_PLATFORMS": "cpu",
    "CUDA_VISIBLE_DEVICES": "",
    "TPU_VISIBLE_CHIPS": "",
}
STARTUP_TIMEOUT_S = 180.0
REPLY_GRACE_S = 15.0


class WorkerDied(RuntimeError):
    """A zygote exited, was killed, or stopped answering."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Executor settings, sent to every zygote at start-up (see `Executor` for their meaning)."""

    timeout_s: float
    memory_mb: int
    max_output_chars: int
    round_floats: bool
    file_size_mb: int
    tmpfs_mb: int
    int_max_str_digits: int
    max_program_chars: int
    preload: tuple[str, ...]


class ZygoteHandle:
    """Parent-side handle of one zygote process (used by one dispatcher thread at a time)."""

    def __init__(self, settings: Settings, work_root: str) -> None:
        self.work_root = tempfile.mkdtemp(prefix="z", dir=work_root)
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-c", _BOOTSTRAP, _PACKAGE_ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(_ENV, HOME=self.work_root, TMPDIR=self.work_root),
            cwd=self.work_root,
            start_new_session=True,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.request_fd, self.reply_fd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        config = dataclasses.asdict(settings) | {"work_root": self.work_root}
        self.reply_timeout_s = settings.timeout_s + REPLY_GRACE_S
        self.protections: dict[str, Any] = {}
        try:
            protocol.write_message(self.request_fd, config)
            ready = self._receive(STARTUP_TIMEOUT_S)
        except WorkerDied:
            self.kill()
            self.release()
            raise
        if not ready.get("ready"):
            self.kill()
            self.release()
            raise WorkerDied(f"rstar_jax.execution: zygote failed to start: {ready.get('error')}")
        self.protections = ready["protections"]

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        try:
            readable, _, _ = select.select([self.reply_fd], [], [], timeout_s)
            if not readable:
                raise WorkerDied(f"rstar_jax.execution: zygote pid {self.proc.pid} silent for {timeout_s:.0f} s")
            return protocol.read_message(self.reply_fd)
        except (protocol.ChannelClosed, ValueError, OSError) as exc:
            raise WorkerDied(f"rstar_jax.execution: zygote pid {self.proc.pid} died ({exc})") from exc

    def send(self, code: str) -> None:
        """Queue one program; the zygote answers requests in order (`receive`)."""
        try:
            protocol.write_message(self.request_fd, {"code": code})
        except (protocol.ChannelClosed, OSError) as exc:
            raise WorkerDied(f"rstar_jax.execution: zygote pid {self.proc.pid} is gone") from exc

    def receive(self) -> dict[str, Any]:
        """The result of the oldest request in flight; WorkerDied if the zygote dies or stays silent."""
        return self._receive(self.reply_timeout_s)

    def kill(self) -> None:
        """SIGKILL the zygote and reap it; its running child dies with it (PDEATHSIG). Idempotent.

        The pipes stay open (a pool thread may still be reading them) until `release`.
        """
        if self.proc.returncode is None:  # not reaped yet, so the pid cannot have been reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def release(self) -> None:
        """Close the pipes and remove the work directory (after `kill`, once no thread uses the pipes)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        shutil.rmtree(self.work_root, ignore_errors=True)


WORK_ROOT_PREFIX = "rstar_exec."


def _running(pid: int) -> bool:
    """Whether process `pid` exists (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def make_work_root() -> str:
    """A new executor work root `<tmp>/rstar_exec.<pid>.<random>`, after removing those of dead processes."""
    base = tempfile.gettempdir()
    with os.scandir(base) as entries:
        for entry in entries:
            if not entry.name.startswith(WORK_ROOT_PREFIX):
                continue
            pid = entry.name[len(WORK_ROOT_PREFIX) :].split(".", 1)[0]
            if pid.isdigit() and not _running(int(pid)) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{WORK_ROOT_PREFIX}{os.getpid()}.", dir=base)


def shutdown(zygotes: list[ZygoteHandle], work_root: str) -> None:
    """Kill every zygote, then release their pipes and remove the executor's work root."""
    for zygote in list(zygotes):
        zygote.kill()
    for zygote in list(zygotes):
        zygote.release()
    zygotes.clear()
    shutil.rmtree(work_root, ignore_errors=True)
