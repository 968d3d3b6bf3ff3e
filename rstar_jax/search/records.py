"""Search trees as JSONL records in the reference schema, and the append-only, resumable tree file.

One record per problem (rstar_reference.md Part B §6):

    {"id", "question", "answer" (not in test mode), "seed", "mode", "rollouts", "num_nodes",
     "best_answer", "best_value",
     "rstar": {"0": {...}, "0.1": {...}, ...}}          # tags in BFS order

Each `rstar` entry has the reference keys `text, extra_info, action, action_input, final_answer, value, q_value,
visit_count` (plus `observation` for code steps) and ours: `depth, terminal, terminal_kind, prior,
consecutive_errors, finish, num_tokens`. `best_answer` is the answer leaf with the highest Q, i.e. the highest PPM
score at test time, found as the reference's `eval_output` does (B §10): a level-by-level walk, each level sorted
by Q (stable), so a tie goes to the shallower answer, then to the one whose ancestors score higher.

The tree file is appended one batch at a time (one `write` of whole lines, then fsync). On open, a torn last line
(a kill during the write) is cut off, so a rerun skips exactly the problems whose records are complete. Timings
go to a sidecar `<path>.timings.jsonl`, so equal seeds give byte-identical tree files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rstar_jax.search.driver import BatchSearch, SearchMode
from rstar_jax.search.tree import TerminalKind

__all__ = ["TreeFile", "batch_records", "best_answer", "read_records"]


def _bfs(first_child: np.ndarray, num_children: np.ndarray) -> list[tuple[int, str]]:
    """(node id, reference tag) of one tree's nodes (fields `[N]`) in BFS order, children in creation order.

    The root's tag is "0"; the k-th child (from 1) of a node tagged t is tagged "t.k".
    """
    order = [(0, "0")]
    for node, tag in order:  # a queue: the loop reaches the children appended behind it
        first = int(first_child[node])
        order.extend((first + k, f"{tag}.{k + 1}") for k in range(int(num_children[node])))
    return order


def best_answer(rstar: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """The (answer, Q) of the answer leaf with the highest Q, or (None, None).

    Ties: the first in the reference's walk order (module docstring). Level d + 1 lists the children (in creation
    order) of level d's nodes in their sorted order, then is itself sorted by Q descending, stably.
    """
    children: dict[str, list[str]] = {tag: [] for tag in rstar}
    for tag in sorted(rstar, key=lambda t: [int(p) for p in t.split(".")]):
        if tag != "0":
            children[tag.rsplit(".", 1)[0]].append(tag)
    best: tuple[str | None, float | None] = (None, None)
    level = ["0"]
    while level:
        level.sort(key=lambda t: -rstar[t]["q_value"])
        for tag in level:
            state = rstar[tag]
            is_answer = state["terminal_kind"] == "answer" and state["answer"] is not None
            if is_answer and (best[1] is None or state["q_value"] > best[1]):
                best = (state["answer"], state["q_value"])
        level = [child for tag in level for child in children[tag]]
    return best


def batch_records(search: BatchSearch) -> list[dict[str, Any]]:
    """The records of a finished `BatchSearch`, in problem order."""
    t = jax.device_get(search.tree)
    q = np.where(t.visit_count > 0, t.value_sum.astype(np.float64) / np.maximum(t.visit_count, 1), 0.0)
    records = []
    for b, problem in enumerate(search.problems):
        nodes = search.nodes[b]
        rstar: dict[str, dict[str, Any]] = {}
        for i, tag in _bfs(t.first_child[b], t.num_children[b]):
            n = nodes[i]
            state: dict[str, Any] = {
                "text": n.text,
                "extra_info": f"question: {problem.question}" if i == 0 else "",
                "action": n.action,
                "action_input": n.step if n.action else "",
                "final_answer": n.final_answer,
            }
            if n.observation is not None:
                state["observation"] = n.observation
            state.update(
                value=float(t.value[b, i]),
                q_value=float(q[b, i]),
                visit_count=int(t.visit_count[b, i]),
                depth=int(t.depth[b, i]),
                terminal=bool(t.terminal[b, i]),
                terminal_kind=TerminalKind(int(t.terminal_kind[b, i])).name.lower(),
                answer=n.answer,
                prior=float(t.prior[b, i]),
                consecutive_errors=n.errors,
                finish=n.finish,
                num_tokens=n.num_tokens,
            )
            rstar[tag] = state
        answer, value = best_answer(rstar)
        record: dict[str, Any] = {"id": problem.id, "question": problem.question}
        if search.mode is not SearchMode.TEST:
            record["answer"] = problem.answer if isinstance(problem.answer, str) else list(problem.answer)
        record.update(
            seed=search.seeds[b],
            mode=search.mode.value,
            rollouts=search.cfg.rollouts,
            num_nodes=int(t.next_free[b]),
            best_answer=answer,
            best_value=value,
            rstar=rstar,
        )
        records.append(record)
    return records


def _append(path: Path, lines: list[str]) -> None:
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())


def _repair(path: Path) -> None:
    """Cuts a torn last line (no trailing newline, or not valid JSON) off the file."""
    if not path.exists():
        return
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    else:
        last_start = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
        try:
            if data:
                json.loads(data[last_start:])
        except ValueError:
            keep = last_start
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a tree file (a torn last line is ignored)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}:{line_no}: not a JSON record ({err})") from err
    return records


class TreeFile:
    """The append-only JSONL file of one search run (module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.timings_path = self.path.with_name(self.path.name + ".timings.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair(self.path)
        _repair(self.timings_path)

    def done_ids(self) -> set[str]:
        """Ids of the problems whose records are complete."""
        if not self.path.exists():
            return set()
        return {record["id"] for record in read_records(self.path)}

    def append(self, records: Iterable[dict[str, Any]], timings: Iterable[dict[str, Any]]) -> None:
        """Appends whole records (one write + fsync), then their timings to the sidecar."""
        _append(self.path, [json.dumps(r, ensure_ascii=False) + "\n" for r in records])
        _append(self.timings_path, [json.dumps(t, ensure_ascii=False) + "\n" for t in timings])
