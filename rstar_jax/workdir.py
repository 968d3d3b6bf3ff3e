"""The run directory: one workdir per run, one subdirectory per self-evolution round, logs, atomic writes.

Layout (created by `RunDir.create`):

    <workdir>/
      .lock                     held (fcntl.flock) by the one process running in the workdir; holds its pid
      config.json               the validated config of the latest invocation that was not refused
      logs/<program>.log        everything logged, at INFO and above, with the traceback of a failure
      problems/                 train.jsonl, test.jsonl and their manifest
      round_<r>/
        trees/  data/  sft/  ppm/  eval/  report/   (see rstar_jax/evolve/rounds.py)

Every file a stage publishes is written to a temporary sibling and renamed into place (`atomic_write_text`),
so a killed run never leaves a half-written file under its final name.

`WorkdirLock` makes a workdir one run's: a second process is refused with `WorkdirBusy` ("workdir ... in use by
pid N"); the lock is an `flock`, released by the kernel when its process dies, so a killed run leaves no stale lock.
`setup_logging` sends everything to the log file and keeps the console quiet: warnings, errors and rstar_jax's
own progress lines only (`quiet_console`), not the INFO chatter of orbax, absl or JAX's backend probing.
"""

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from absl import logging as absl_logging

__all__ = [
    "RoundDir",
    "RunDir",
    "WorkdirBusy",
    "WorkdirLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_writable_dir",
    "file_sha256",
    "log_failure",
    "LOG_FILE_ONLY",
    "quiet_console",
    "setup_logging",
    "write_json",
]

ROUND_SUBDIRS = ("trees", "data", "sft", "ppm", "eval", "report")


@dataclasses.dataclass(frozen=True)
class RoundDir:
    """The directories of one self-evolution round."""

    root: Path

    @property
    def trees(self) -> Path:
        return self.root / "trees"

    @property
    def sft(self) -> Path:
        return self.root / "sft"

    @property
    def ppm(self) -> Path:
        return self.root / "ppm"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def report(self) -> Path:
        return self.root / "report"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run's working directory."""

    root: Path

    @classmethod
    def create(cls, path: str | os.PathLike, rounds: range) -> "RunDir":
        """Creates (or reuses) the workdir and the directories of `rounds`."""
        run = cls(Path(path).expanduser().resolve())
        if run.root.exists() and not run.root.is_dir():
            raise NotADirectoryError(f"workdir {run.root} exists and is not a directory (config.workdir)")
        for d in run.missing_dirs(rounds):
            d.mkdir(parents=True, exist_ok=True)
        return run

    def missing_dirs(self, rounds: range) -> list[Path]:
        """The directories `create` would make for `rounds` that do not exist yet, parents first."""
        wanted = [self.root, self.logs, self.problems]
        for r in rounds:
            wanted += [self.round(r).root, *(self.round(r).root / sub for sub in ROUND_SUBDIRS)]
        return [d for d in wanted if not d.exists()]

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def problems(self) -> Path:
        return self.root / "problems"

    def round(self, r: int) -> RoundDir:
        return RoundDir(self.root / f"round_{r}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` through a fsynced temporary file in the same directory and an atomic rename.

    The file gets mode 0644 like an ordinary output file (`mkstemp` creates 0600). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, trainer_format: bool = False) -> None:
    """Atomically writes `data` as indented, key-sorted JSON with a final newline.

    `trainer_format` writes the reference trainers' input format instead (sft.json, pairs.json): indent 1, keys in
    insertion order, no final newline.
    """
    if trainer_format:
        text = json.dumps(data, indent=1, ensure_ascii=False)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable_dir(path: str | os.PathLike, label: str) -> Path:
    """`path` resolved, when it is a writable directory or can be made one (its nearest existing ancestor is a
    writable directory); otherwise raises `NotADirectoryError` or `PermissionError` (a read-only file system
    included) whose one-line message starts with `label` (e.g. "config.workdir = 'x'"). Writes nothing."""
    root = Path(path).expanduser().resolve()
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is not a directory" if existing == root else f"cannot be created: {existing} is not a directory"
        raise NotADirectoryError(f"{label}: {root} {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{label}: {existing} is not writable (permissions or a read-only file system)")
    return root


def check_output_dir(path: str | os.PathLike, label: str) -> Path:
    """`check_writable_dir` for an output directory that is written as a temporary sibling and renamed into place
    (an HF export): `path` must be a directory or absent, and its parent writable or creatable. An existing file is
    refused, never replaced."""
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{label}: {root} exists and is not a directory (it would be replaced); remove it")
    check_writable_dir(root.parent, label)
    return root


class WorkdirBusy(RuntimeError):
    """Another live process holds the workdir's lock."""


class WorkdirLock:
    """An exclusive `flock` on `<workdir>/.lock` (module docstring); `with WorkdirLock(root):` holds it.

    The workdir itself is created if missing (a missing workdir cannot be busy). The lock file keeps the holder's
    pid for the message of the process that is refused; its mere existence means nothing.
    """

    NAME = ".lock"

    def __init__(self, root: str | os.PathLike, key: str = "config.workdir"):
        self.label = f"{key} = {str(root)!r}"
        self.root = Path(root).expanduser().resolve()
        self.path = self.root / self.NAME
        self._fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        check_writable_dir(self.root, self.label)
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = self.path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
            raise WorkdirBusy(
                f"workdir {self.root} in use by pid {holder} (lock {self.path}); wait for it, or use another "
                "config.workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_PROJECT_DIRS = tuple(str(Path(__file__).resolve().parents[1] / d) + os.sep for d in ("rstar_jax", "launch"))


LOG_FILE_ONLY = {"console": False}
"""`logging.info(..., extra=LOG_FILE_ONLY)`: an INFO line of ours for the log file only (details, summaries)."""


class _ConsoleFilter(logging.Filter):
    """Console records: WARNING and above from anyone, INFO only from rstar_jax's own modules and not marked
    `LOG_FILE_ONLY` (when `quiet`)."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.quiet or record.levelno >= logging.WARNING:
            return True
        own = record.levelno >= logging.INFO and record.pathname.startswith(_PROJECT_DIRS)
        return own and getattr(record, "console", True)


class _ConsoleFormatter(logging.Formatter):
    """Quiet console lines: rstar_jax's own INFO as the bare message, anything else as `warning: <message>` (the
    log file keeps absl's full prefix: time, thread, file and line)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def _console_filter() -> _ConsoleFilter:
    handler = absl_logging.get_absl_handler()
    for f in handler.filters:
        if isinstance(f, _ConsoleFilter):
            return f
    f = _ConsoleFilter()
    handler.addFilter(f)
    return f


def quiet_console(quiet: bool = True) -> None:
    """Keeps library INFO lines (orbax, absl, JAX) off the console and prints the rest without absl's prefix;
    `quiet=False` (`--verbose`) lets everything through in absl's format."""
    _console_filter().quiet = quiet
    absl_logging.get_absl_handler().setFormatter(_ConsoleFormatter() if quiet else absl_logging.PythonFormatter())


def setup_logging(log_dir: Path, program: str) -> Path:
    """Sends absl logging (INFO and above) to `<log_dir>/<program>.log`, appended; returns the log path.

    The console keeps what `quiet_console` lets through (quiet unless `--verbose` turned it off)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{program}.log"
    _console_filter()
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.set_stderrthreshold(absl_logging.INFO)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == log_path:
            return log_path
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(absl_logging.PythonFormatter())
    root.addHandler(handler)
    return log_path


def log_failure(message: str, exc: BaseException) -> None:
    """Writes `message` and the traceback of `exc` to the log files only (never to the console)."""
    record = logging.LogRecord(
        "rstar_jax", logging.ERROR, __file__, 0, message, None, (type(exc), exc, exc.__traceback__)
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
