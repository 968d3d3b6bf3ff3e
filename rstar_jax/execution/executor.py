"""`Executor`: the only way rstar_jax runs model-written code. Zygote processes fed by dispatcher threads.

    with Executor(timeout_s=10.0, workers=2) as ex:
        results = ex.run_batch(["print(1 + 1)", "x = 2\\nx * 3"])   # -> outputs "2\\n", "6\\n"

Each program runs in its own child process forked from a pre-warmed zygote (`zygote.py`), confined by the
layers listed in `Executor.protections` (see `sandbox.py`); the caller's process never executes model code.

Slots: each of the `workers` slots holds a HEAVY zygote (the `preload` modules imported) and, by default, a
LEAN one (stdlib only, forks ~3x cheaper); `routing.route` sends a program that imports nothing outside the
standard library to the LEAN one. Both run the same child code under the same protections, so results do
not depend on the flavour (see `routing.py`). A slot runs one program at a time.

Dispatch: one thread per slot takes programs from a shared queue and, while the queue holds work for every
slot, keeps a second program of the same flavour queued on its zygote, so the zygote forks the next child
without waiting for the parent to wake up. A zygote that dies or stops answering is killed and replaced; its
in-flight programs are re-queued, and a program whose zygote died twice while running it is reported as
INFRA_ERROR (those queued behind it are not charged). `run_batch` is thread-safe (callers share the queue) and
runs identical programs of one batch once. `close()` (or leaving the `with` block, or interpreter exit)
SIGKILLs every zygote; a running program dies with its zygote (PDEATHSIG).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import queue
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from rstar_jax.execution import protocol
from rstar_jax.execution.result import ExecResult, ExecStatus
from rstar_jax.execution.routing import Flavour, route
from rstar_jax.execution.worker import Settings, WorkerDied, ZygoteHandle, make_work_root, shutdown

_LOG = logging.getLogger("rstar_jax.execution")
_PIPELINE = 2  # programs in flight per zygote: one running, one queued behind it
_PIPE_BUDGET = 48 << 10  # bytes of requests in flight per zygote (below the 64 KiB pipe buffer)
_ATTEMPTS = 2
DEFAULT_PRELOAD = ("numpy", "scipy", "sympy")


@dataclasses.dataclass
class _Job:
    code: str
    future: concurrent.futures.Future
    flavour: Flavour
    attempts: int = 0

    @functools.cached_property
    def request_bytes(self) -> int:
        """The framed request's size in the pipe (ASCII JSON: up to 12 bytes per character of code)."""
        return len(protocol.encode({"code": self.code}))


_STOP = None  # queue sentinel: a dispatcher thread exits


def _finalize(closing: threading.Event, zygotes: list[ZygoteHandle], work_root: str) -> None:
    """close() and interpreter exit: no replacement zygote may start after this; kill all."""
    closing.set()
    shutdown(zygotes, work_root)


def _to_result(reply: dict[str, Any]) -> ExecResult:
    """An ExecResult from a zygote's result message (KeyError / ValueError when malformed)."""
    status = ExecStatus(reply["status"])
    ok = status == ExecStatus.OK
    return ExecResult(ok, str(reply["output"]), None if ok else str(reply["error"]), float(reply["seconds"]), status)


class Executor:
    """Runs batches of untrusted Python programs in confined, pre-warmed child processes.

    Args:
      timeout_s: wall-clock limit per program (CPU seconds are capped at int(timeout_s) + 2).
      memory_mb: address-space budget per program, on top of the pre-warmed interpreter's own size.
      max_output_chars: output kept per program; longer output keeps head and tail around "...".
      workers: slots (programs that run in parallel); default: the number of CPU cores.
      round_floats: reference post-processing: a whole-output float is rounded to 4 decimals.
      file_size_mb: cap on stdout/stderr and on any file a program writes (RLIMIT_FSIZE).
      tmpfs_mb: size of each zygote's private tmpfs holding the programs' working directories.
      int_max_str_digits: int<->str digit limit inside programs (CPython's default is 4300).
      max_program_chars: longer programs are not run (status EXCEPTION, "program too long").
      preload: modules imported once in each zygote, so programs find them already loaded (sympy's caches are
        warmed too). Every preloaded extension module makes each fork slower (page tables and mappings are
        copied per program): e.g. adding "scipy.optimize", "scipy.special" costs ~1 ms per program here,
        while a program importing scipy.optimize itself pays ~0.2 s.
      lean_zygotes: give each slot a second, LEAN zygote (stdlib only) for programs that import nothing else
        (`routing.route`); about 3x cheaper forks for them. No effect when `preload` is empty.
    """

    @classmethod
    def from_config(cls, ex: Any) -> Executor:
        """The executor of an `rstar_jax.config.ExecutionConfig` section (`workers` 0: one per CPU core)."""
        return cls(
            timeout_s=ex.timeout_s,
            memory_mb=ex.memory_mb,
            max_output_chars=ex.max_output_chars,
            workers=ex.workers or None,
            round_floats=ex.round_floats,
        )

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_output_chars: int = 1024,
        workers: int | None = None,
        *,
        round_floats: bool = False,
        file_size_mb: int = 16,
        tmpfs_mb: int = 256,
        int_max_str_digits: int = 100_000,
        max_program_chars: int = 200_000,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        lean_zygotes: bool = True,
    ) -> None:
        workers = workers if workers is not None else max(os.cpu_count() or 1, 1)
        positive = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "workers": workers,
            "max_output_chars": max_output_chars,
            "file_size_mb": file_size_mb,
            "tmpfs_mb": tmpfs_mb,
            "max_program_chars": max_program_chars,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"rstar_jax.execution.Executor: {name} must be > 0, got {value!r}")
        if isinstance(preload, str) or not all(
            isinstance(m, str) and all(part.isidentifier() for part in m.split(".")) for m in preload
        ):
            raise TypeError(f"rstar_jax.execution.Executor: preload must be a sequence of module names: {preload!r}")
        if int_max_str_digits != 0 and int_max_str_digits < 640:
            raise ValueError(
                f"rstar_jax.execution.Executor: int_max_str_digits must be 0 or >= 640, got {int_max_str_digits}"
            )
        self._settings = Settings(
            timeout_s=float(timeout_s),
            memory_mb=int(memory_mb),
            max_output_chars=int(max_output_chars),
            round_floats=bool(round_floats),
            file_size_mb=int(file_size_mb),
            tmpfs_mb=int(tmpfs_mb),
            int_max_str_digits=int(int_max_str_digits),
            max_program_chars=int(max_program_chars),
            preload=tuple(preload),
        )
        self._flavour_settings = {Flavour.HEAVY: self._settings}
        if lean_zygotes and self._settings.preload:
            self._flavour_settings[Flavour.LEAN] = dataclasses.replace(self._settings, preload=())
        self._lean = Flavour.LEAN in self._flavour_settings
        self._work_root = make_work_root()
        self._zygotes: list[ZygoteHandle] = []  # every live zygote (for shutdown)
        self._slots: list[dict[Flavour, ZygoteHandle]] = []
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closing = threading.Event()  # set by close() and by the exit-time finalizer
        self._finalizer = weakref.finalize(self, _finalize, self._closing, self._zygotes, self._work_root)
        try:
            slots = [list(self._flavour_settings) for _ in range(workers)]
            with concurrent.futures.ThreadPoolExecutor(workers * len(self._flavour_settings)) as starter:
                started = [[starter.submit(self._start, flavour) for flavour in slot] for slot in slots]
                self._slots.extend(
                    {flavour: future.result() for flavour, future in zip(slot, futures, strict=True)}
                    for slot, futures in zip(slots, started, strict=True)
                )
            reported = {json.dumps(z.protections, sort_keys=True) for z in self._zygotes}
            if len(reported) != 1:
                raise RuntimeError(f"rstar_jax.execution.Executor: zygotes report different protections: {reported}")
        except BaseException:
            self._finalizer()
            raise
        self.protections: dict[str, Any] = dict(self._slots[0][Flavour.HEAVY].protections)
        self._log_protections()
        self._threads = [
            threading.Thread(target=self._dispatch, args=(i,), name=f"rstar-exec-{i}", daemon=True)
            for i in range(len(self._slots))
        ]
        for thread in self._threads:
            thread.start()

    def _start(self, flavour: Flavour) -> ZygoteHandle:
        """Start one zygote of `flavour` and register it for shutdown."""
        zygote = ZygoteHandle(self._flavour_settings[flavour], self._work_root)
        with self._lock:
            self._zygotes.append(zygote)
        return zygote

    def _log_protections(self) -> None:
        p = self.protections
        layers = {
            "network namespace": p.get("network_namespace"),
            "private tmpfs": p.get("tmpfs_mb"),
            "landlock": p.get("landlock_abi"),
            "seccomp": p.get("seccomp"),
        }
        _LOG.info("rstar_jax.execution: protections in force: %s", p, extra={"console": False})  # log file only
        missing = [name for name, on in layers.items() if not on]
        if missing:
            _LOG.warning("rstar_jax.execution: NOT in force on this host: %s", ", ".join(missing))

    @property
    def work_root(self) -> str:
        """Host directory under which every zygote keeps its programs' working directories."""
        return self._work_root

    def worker_pids(self) -> list[int]:
        """Process ids of the live zygotes, slot by slot, HEAVY before LEAN (for tests and monitoring)."""
        with self._lock:
            return [z.proc.pid for slot in self._slots for z in slot.values()]

    def run_batch(self, programs: Sequence[str]) -> list[ExecResult]:
        """Run every program; results in the same order. Identical programs run once (results shared)."""
        for i, program in enumerate(programs):
            if not isinstance(program, str):
                raise TypeError(f"rstar_jax.execution.Executor.run_batch: programs[{i}] is {type(program).__name__}")
        futures: dict[str, concurrent.futures.Future] = {}
        limit = self._settings.max_program_chars
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("rstar_jax.execution.Executor.run_batch: the executor is closed")
            for program in dict.fromkeys(programs):
                future: concurrent.futures.Future = concurrent.futures.Future()
                futures[program] = future
                if len(program) > limit:
                    error = f"program too long ({len(program)} > {limit} chars)"
                    future.set_result(ExecResult(False, "", error, 0.0, ExecStatus.EXCEPTION))
                else:
                    self._jobs.put(_Job(program, future, route(program) if self._lean else Flavour.HEAVY))
        return [futures[program].result() for program in programs]

    def _dispatch(self, slot: int) -> None:
        """Dispatcher thread of `slot`: feed its zygotes from the job queue, resolve futures, replace the dead.

        Programs in flight all share one flavour (one zygote), so the slot runs one program at a time.
        """
        zygotes = self._slots[slot]
        inflight: collections.deque[_Job] = collections.deque()
        stopping = False
        while True:
            while not stopping and len(inflight) < _PIPELINE:
                try:
                    job = self._jobs.get(block=not inflight)
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                if inflight and self._jobs.qsize() < len(self._threads):
                    self._jobs.put(job)  # little work left: leave it to idle dispatchers (no head-of-line wait)
                    break
                if inflight and job.flavour is not inflight[0].flavour:
                    self._jobs.put(job)  # the other zygote of this slot: never two programs at once per slot
                    break
                if inflight and sum(j.request_bytes for j in inflight) + job.request_bytes > _PIPE_BUDGET:
                    self._jobs.put(job)  # too large to queue behind the others without risking a full pipe
                    break
                inflight.append(job)
                try:
                    zygotes[job.flavour].send(job.code)
                except WorkerDied:
                    break
            if not inflight:
                if stopping:
                    return
                continue
            flavour = inflight[0].flavour
            try:
                result = _to_result(zygotes[flavour].receive())
            except (WorkerDied, KeyError, ValueError, TypeError) as exc:
                died = exc if isinstance(exc, WorkerDied) else WorkerDied(f"rstar_jax.execution: bad reply: {exc!r}")
                if not self._recover(slot, flavour, inflight, died):
                    return
                continue
            inflight.popleft().future.set_result(result)

    def _recover(self, slot: int, flavour: Flavour, inflight: collections.deque[_Job], exc: WorkerDied) -> bool:
        """Re-queue or fail the in-flight jobs of a dead zygote and start its replacement (False if closed)."""
        dead = self._slots[slot][flavour]
        dead.kill()
        inflight[0].attempts += 1  # the program that was running; those queued behind it are not charged
        for job in inflight:
            if self._closing.is_set() or job.attempts >= _ATTEMPTS:
                error = "executor closed" if self._closing.is_set() else f"worker died twice: {exc}"
                job.future.set_result(ExecResult(False, "", error, 0.0, ExecStatus.INFRA_ERROR))
            else:
                self._jobs.put(job)
        inflight.clear()
        if self._closing.is_set():
            return False
        _LOG.warning("%s; replacing it", exc)
        try:
            fresh = ZygoteHandle(self._flavour_settings[flavour], self._work_root)
        except (WorkerDied, OSError) as start_exc:
            _LOG.error("rstar_jax.execution: could not start a replacement zygote: %s", start_exc)
            return not self._closing.is_set()  # retry on the next job (its send fails fast)
        with self._lock:
            if self._closing.is_set():
                fresh.kill()
                fresh.release()
                return False
            self._zygotes[self._zygotes.index(dead)] = fresh
            self._slots[slot][flavour] = fresh
        dead.release()
        return True

    def close(self) -> None:
        """Kill all zygotes and running programs; idempotent.

        Batches still running in other threads get INFRA_ERROR ("executor closed") for unfinished programs.
        """
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            zygotes = list(self._zygotes)
        for zygote in zygotes:
            zygote.kill()
        for _ in getattr(self, "_threads", ()):
            self._jobs.put(_STOP)
        for thread in getattr(self, "_threads", ()):
            thread.join()
        while True:  # jobs queued behind the stop markers
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_result(ExecResult(False, "", "executor closed", 0.0, ExecStatus.INFRA_ERROR))
        self._finalizer()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
