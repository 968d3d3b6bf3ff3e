"""A small pool of persistent grading worker processes with a hard, signal-free time limit per check.

Each worker is `python -m rstar_jax.grading._worker`, spoken to over pipes (one JSON line each way). A
check is sent to an idle worker and the calling thread waits with `poll` for at most `timeout_s`; on
timeout, crash or garbled output the worker is killed (SIGKILL to its own session) and a replacement is
started at once in the background, and the check counts as not matching. Nothing uses SIGALRM, so checks
can run from any thread; the pool is thread-safe (a worker serves one thread at a time; threads beyond
`max_workers` wait for a free worker, and that wait is not part of `timeout_s`).

Workers are started lazily. Their start-up (imports, about 0.5 s) is bounded separately by
`startup_timeout_s`. All pools are closed at interpreter exit; a forked child process drops the inherited
workers and starts its own.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that contains `rstar_jax/`
_TIMED_OUT = "timed out"
_DIED = "died"
_LIVE_POOLS: weakref.WeakSet[GraderPool] = weakref.WeakSet()


class _Worker:
    """One worker process and the read buffer of its stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("JAX_PLATFORMS", "cpu")  # in case `rstar_jax/__init__.py` ever imports jax
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rstar_jax.grading._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        self.ready = False
        self._buffer = b""

    def _readline(self, deadline: float) -> bytes | None:
        """Next protocol line, or None on timeout; EOFError when the worker closed its end (it died: the
        pipe closes before the process becomes reapable, so `poll()` may still say it is running)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            poller = select.poll()  # not select.select: it fails for descriptors >= 1024 in busy processes
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(1, int(remaining * 1000))):
                continue  # re-check the deadline
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("grading worker closed its stdout")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def wait_ready(self, startup_timeout_s: float) -> bool:
        if not self.ready:
            try:
                line = self._readline(time.monotonic() + startup_timeout_s)
            except EOFError:
                line = None
            self.ready = line is not None and json.loads(line) == {"ready": True}
        return self.ready

    def check(self, request_id: int, pred: str, refs: Sequence[str], pct: bool, timeout_s: float) -> bool | str:
        """The worker's verdict, `_TIMED_OUT`, or `_DIED` (end of stream, broken pipe or garbled reply)."""
        payload = json.dumps({"id": request_id, "pred": pred, "refs": list(refs), "pct": pct}) + "\n"
        try:
            self.proc.stdin.write(payload.encode("ascii"))
            self.proc.stdin.flush()
        except OSError:
            return _DIED
        try:
            line = self._readline(time.monotonic() + timeout_s)
        except EOFError:
            return _DIED
        if line is None:
            return _TIMED_OUT
        try:
            reply = json.loads(line)
        except ValueError:
            return _DIED
        if reply.get("id") != request_id or not isinstance(reply.get("match"), bool):
            return _DIED
        return reply["match"]

    def kill(self) -> None:
        """SIGKILL the worker's session (it may have children of its own) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.proc.wait()

    def close(self, grace_s: float = 1.0) -> None:
        """Ask politely (EOF on stdin), then kill."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=grace_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class GraderPool:
    """Up to `max_workers` grading processes shared by any number of threads.

    Verdicts the workers actually returned are remembered (an LRU of `cache_size` entries keyed by
    pred, refs and the percent policy), so repeated answers, common among MCTS rollouts, cost one lookup.
    Timeouts and crashes are not remembered.

    Args:
      max_workers: processes to run at most (each ~60 MiB resident); defaults to min(4, CPU count).
      startup_timeout_s: how long a new worker may take to import sympy and math-verify.
      cache_size: verdicts to remember; 0 disables the cache.
    """

    def __init__(
        self, max_workers: int | None = None, startup_timeout_s: float = 120.0, cache_size: int = 65536
    ) -> None:
        if max_workers is None:
            max_workers = min(4, os.cpu_count() or 1)
        if max_workers < 1:
            raise ValueError(f"rstar_jax/grading/pool.py: max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.startup_timeout_s = startup_timeout_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._ids = itertools.count()
        self._closed = False
        self._pid = os.getpid()
        self._cache_size = cache_size
        self._verdicts: OrderedDict[tuple[str, tuple[str, ...], bool], bool] = OrderedDict()
        _LIVE_POOLS.add(self)

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():  # the workers belong to the parent process: never touch them
            self._pid, self._idle, self._all = os.getpid(), [], set()

    def _acquire(self) -> _Worker:
        with self._cond:
            self._forget_if_forked()
            while True:
                if self._closed:
                    raise RuntimeError("rstar_jax/grading/pool.py: GraderPool is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.proc.poll() is None:
                        return worker
                    self._all.discard(worker)  # died while idle (killed from outside): never blame a check on it
                    worker.kill()
                if len(self._all) < self.max_workers:
                    worker = _Worker()
                    self._all.add(worker)
                    return worker
                self._cond.wait()

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if worker not in self._all:  # closed (or forked) meanwhile
                if healthy:
                    worker.close()
                return
            if healthy:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
                if not self._closed:  # start the replacement now so its imports overlap other work
                    replacement = _Worker()
                    self._all.add(replacement)
                    self._idle.append(replacement)
            self._cond.notify()

    def check(self, pred: str, refs: Sequence[str], percent_as_fraction: bool, timeout_s: float) -> bool:
        """True when `pred` matches any of `refs` symbolically within `timeout_s` seconds; False otherwise.

        A worker that dies without timing out (killed from outside, or crashed on this input) gets the check
        once more on a fresh worker; a second death, like a timeout, means False.
        """
        key = (pred, tuple(refs), percent_as_fraction)
        with self._cond:
            cached = self._verdicts.get(key)
            if cached is not None:
                self._verdicts.move_to_end(key)
                return cached
        for _ in range(2):
            worker = self._acquire()
            verdict: bool | str = _DIED
            try:
                if not worker.wait_ready(self.startup_timeout_s):
                    raise RuntimeError(
                        "rstar_jax/grading/pool.py: grading worker did not start; run "
                        "`python -m rstar_jax.grading._worker` to see its error"
                    )
                verdict = worker.check(next(self._ids), pred, refs, percent_as_fraction, timeout_s)
            finally:
                self._release(worker, healthy=isinstance(verdict, bool))
            if verdict != _DIED:
                break
        if isinstance(verdict, bool) and self._cache_size > 0:
            with self._cond:
                self._verdicts[key] = verdict
                if len(self._verdicts) > self._cache_size:
                    self._verdicts.popitem(last=False)
        return verdict is True

    def close(self) -> None:
        """Stop all workers; the pool cannot be used afterwards."""
        with self._cond:
            self._forget_if_forked()
            self._closed = True
            workers, self._all, self._idle = list(self._all), set(), []
            self._cond.notify_all()
        for worker in workers:
            worker.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the workers currently alive or starting (for tests and monitoring)."""
        with self._cond:
            self._forget_if_forked()
            return sorted(worker.proc.pid for worker in self._all)


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()
