"""Append-only predictions files: one JSON line per finished problem, durable before the next chunk starts.

    store = PredictionFile(out / "math500" / "mcts@8.jsonl")
    todo = [p for p in problems if p.id not in store.done]
    store.append(rows)                      # each row one line, written with one write(2), then fsync

A kill (even SIGKILL) can leave at most a torn last line: opening the file truncates it back to the last
complete line, so a rerun skips every finished id and recomputes only what was lost; an id is never written
twice (`append` refuses one already present). A complete line that is not a JSON object is an error naming the
file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PredictionFile", "read_rows"]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The complete rows of a predictions file (a torn last line is ignored); ValueError names a bad line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):  # the part after the last \n is torn
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON line ({err.msg}); delete the file to recompute it") from None
        if not isinstance(row, dict) or "id" not in row:
            raise ValueError(f"{path}:{n}: not a prediction record (a JSON object with an 'id')")
        rows.append(row)
    return rows


class PredictionFile:
    """One method's predictions on one benchmark (module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # a torn last line from a killed run
                with open(self.path, "r+b") as f:
                    f.truncate(complete)
                    os.fsync(f.fileno())
        self.rows = read_rows(self.path)
        self.done = {str(r["id"]) for r in self.rows}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Appends `rows` (ids not yet present), each as one line in one write, then fsyncs."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for row in rows:
                if str(row["id"]) in self.done:
                    raise ValueError(f"{self.path}: problem {row['id']!r} is already recorded")
                os.write(fd, (json.dumps(row, ensure_ascii=False) + "\n").encode())
                self.done.add(str(row["id"]))
                self.rows.append(row)
            os.fsync(fd)
        finally:
            os.close(fd)
