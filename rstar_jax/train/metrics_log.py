"""A training run's metric logs, both in its workdir: `metrics.jsonl` and a TensorBoard event file.

    with MetricsLog(workdir, start_step) as log:  # drops what an interrupted attempt logged after start_step
        log.write(step, {"loss": 0.7, "grad_norm": 1.2, "eval_loss": 0.8}, throughput={"tokens_per_s": 5e3})

`metrics.jsonl` has one JSON object per logged step (`{"step": s, **metrics}`). The event file
(`events.out.tfevents.train`) holds the same values as TensorBoard scalars, tagged `train/<name>`, or
`eval/<name>` for a metric called `eval_<name>`, plus the `throughput` values (`train/tokens_per_s`), which vary
from run to run and so stay out of `metrics.jsonl` and the returned summaries. Read them with
`tensorboard --logdir=<workdir>`, or in Python with TensorBoard's `EventAccumulator`; a whole run directory
(`tensorboard --logdir=workdir/tiny`) shows each training job (`round_1/sft/run`, `round_1/ppm/run`, ...) as a run.

Resuming: training restarts from its latest checkpoint, which may be older than the last logged step (a kill
between a log point and the next save), so the resumed run logs some steps a second time. TensorBoard's readers
disagree about repeated steps: its default data server keeps the later record of a step (it drops what it read
from that step on), while the Python `EventAccumulator` (`--load_fast=false`, and the tests) keeps both unless a
`SessionLog.START` event marks the restart, drawing a line that turns back on itself. So the log is cut instead:
opening it at `start_step` rewrites both files without the records and events of later steps (and without a
torn last line or record of a killed write), and every reader, `metrics.jsonl` and the report's curves included,
sees each step once. The event file keeps one fixed name, so there is never a second file whose name order
TensorBoard could misread. It is created at the first `write`, so an attempt that fails before its first log
point leaves no file behind (the stages treat a non-empty file as work done).

The writer is the `tensorboard` package's own (`tensorboard.summary.writer.record_writer` and its protos),
without TensorFlow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

__all__ = ["EVENTS_FILE", "METRICS_FILE", "MetricsLog", "scalar_tag"]

METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.out.tfevents.train"
_FILE_VERSION = "brain.Event:2"


def scalar_tag(name: str) -> str:
    """The TensorBoard tag of a metric: `eval_loss` -> `eval/loss`, `loss` -> `train/loss`."""
    return f"eval/{name[5:]}" if name.startswith("eval_") else f"train/{name}"


def _jsonl_kept(path: Path, start_step: int) -> list[str]:
    """The complete lines of `path` whose record has step <= start_step."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill
        if line.endswith("\n") and int(record.get("step", 0)) <= start_step:
            kept.append(line)
    return kept


def _events_kept(path: Path, start_step: int) -> list[bytes]:
    """The scalar events of `path` at steps <= start_step, as written (a torn last record is not read)."""
    kept = []
    for raw in RawEventFileLoader(str(path)).Load():
        event = event_pb2.Event.FromString(raw)
        if event.HasField("summary") and event.step <= start_step:
            kept.append(raw)
    return kept


def _replace(path: Path, write: Any) -> None:
    """Writes `path` through a temporary sibling (named so that TensorBoard never reads it) and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _version_event() -> bytes:
    return event_pb2.Event(wall_time=time.time(), step=0, file_version=_FILE_VERSION).SerializeToString()


class MetricsLog:
    """`metrics.jsonl` and the TensorBoard event file of one training workdir (module docstring)."""

    def __init__(self, workdir: str | os.PathLike, start_step: int):
        root = Path(workdir)
        self.jsonl_path, self.events_path = root / METRICS_FILE, root / EVENTS_FILE
        self._events: RecordWriter | None = None
        self.primary = jax.process_index() == 0  # many processes, one log: process 0 writes it, the others nothing
        if not self.primary:
            return
        if self.jsonl_path.exists():
            lines = _jsonl_kept(self.jsonl_path, start_step)
            _replace(self.jsonl_path, lambda f: f.write("".join(lines).encode("utf-8")))
        if self.events_path.exists():
            events = [_version_event(), *_events_kept(self.events_path, start_step)]

            def rewrite(f: Any) -> None:
                writer = RecordWriter(f)
                for event in events:
                    writer.write(event)

            _replace(self.events_path, rewrite)

    def _writer(self) -> RecordWriter:
        if self._events is None:
            new = not self.events_path.exists()
            self._events = RecordWriter(open(self.events_path, "ab"))  # noqa: SIM115 (closed in `close`)
            if new:
                self._events.write(_version_event())
        return self._events

    def write(self, step: int, metrics: Mapping[str, float], throughput: Mapping[str, float] | None = None) -> None:
        """Logs `metrics` at `step` to both files and `throughput` (per-run speeds) to the event file only."""
        if not self.primary:
            return
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        values = [summary_pb2.Summary.Value(tag=scalar_tag(k), simple_value=float(v)) for k, v in metrics.items()]
        values += [
            summary_pb2.Summary.Value(tag=f"train/{k}", simple_value=float(v)) for k, v in (throughput or {}).items()
        ]
        event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values))
        writer = self._writer()
        writer.write(event.SerializeToString())
        writer.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
