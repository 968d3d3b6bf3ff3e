"""The run directory: one workdir per run, one subdirectory per self-evolution round, logs, atomic writes.

Layout (created by `RunDir.create`):

    <workdir>/
      config.json               the validated config of the latest invocation
      logs/<program>.log        absl logging, also echoed to the console
      problems/                 train.jsonl, test.jsonl and their manifest
      round_<r>/
        trees/  data/  sft/  ppm/  eval/  report/   (see rstar_jax/evolve/rounds.py)

Every file a stage publishes is written to a temporary sibling and renamed into place (`atomic_write_text`),
so a killed run never leaves a half-written file under its final name.
"""

import dataclasses
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
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
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
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"workdir {root} exists and is not a directory (config.workdir)")
        run = cls(root)
        for d in (run.logs, run.problems):
            d.mkdir(parents=True, exist_ok=True)
        for r in rounds:
            for sub in ROUND_SUBDIRS:
                (run.round(r).root / sub).mkdir(parents=True, exist_ok=True)
        return run

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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically writes `data` as indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def setup_logging(log_dir: Path, program: str) -> Path:
    """Sends absl logging to `<log_dir>/<program>.log` (appended) as well as the console; returns the log path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{program}.log"
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == log_path:
            return log_path
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(absl_logging.PythonFormatter())
    root.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.set_stderrthreshold(absl_logging.INFO)
    return log_path
