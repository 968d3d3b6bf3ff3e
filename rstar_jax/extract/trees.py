"""Search-tree records -> host-side node trees and root-to-answer trajectories, for data extraction.

A record is one problem's tree in the reference schema (`rstar_jax/search/records.py`): `rstar` maps tags
("0", "0.1", "0.1.2", ...) to node dicts. The parent of tag `t` is `t` without its last `.k`.

Correctness of an answer leaf is its terminal reward in data-generation mode: `value` is +1 when the answer
matched the ground truth and -1 otherwise (rstar_reference.md Part A, "terminal reward"). A step "failed
execution" when its code raised / timed out, i.e. its `consecutive_errors` count is positive.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from typing import Any

__all__ = ["AnswerPath", "Difficulty", "Node", "answer_paths", "build_tree", "classify"]


class Difficulty(enum.StrEnum):
    """Per-problem difficulty from its answer trajectories: easy = all correct, hard = none correct."""

    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"


@dataclasses.dataclass
class Node:
    """One tree node. `n_correct` / `n_wrong`: correct / wrong answer leaves in this node's subtree."""

    tag: str
    text: str
    q: float
    kind: str
    correct: bool | None  # answer leaves only
    failed: bool
    children: list[Node] = dataclasses.field(default_factory=list)
    n_correct: int = 0
    n_wrong: int = 0


@dataclasses.dataclass(frozen=True)
class AnswerPath:
    """A root -> answer-leaf path: `texts` and `qs` of the nodes at depth >= 1 (answer step included)."""

    texts: tuple[str, ...]
    qs: tuple[float, ...]
    correct: bool
    failed: bool

    @property
    def mean_q(self) -> float:
        return sum(self.qs) / len(self.qs)

    @property
    def min_q(self) -> float:
        return min(self.qs)

    @property
    def response(self) -> str:
        return "".join(self.texts)


def _get(record: dict[str, Any], tag: str, state: dict[str, Any], key: str) -> Any:
    if key not in state:
        raise ValueError(f"rstar_jax/extract/trees.py: record {record.get('id')!r} node {tag!r} lacks key {key!r}")
    return state[key]


def build_tree(record: dict[str, Any]) -> Node:
    """The node tree of one record, children in tag order, subtree answer counts filled in."""
    rstar = record.get("rstar")
    if not isinstance(rstar, dict) or "0" not in rstar:
        raise ValueError(f"rstar_jax/extract/trees.py: record {record.get('id')!r} has no 'rstar' tree with root '0'")
    nodes: dict[str, Node] = {}
    for tag, state in rstar.items():
        kind = _get(record, tag, state, "terminal_kind")
        nodes[tag] = Node(
            tag=tag,
            text=_get(record, tag, state, "text"),
            q=float(_get(record, tag, state, "q_value")),
            kind=kind,
            correct=(float(_get(record, tag, state, "value")) > 0) if kind == "answer" else None,
            failed=int(state.get("consecutive_errors", 0)) > 0,
        )
    for tag in sorted(nodes, key=lambda t: [int(p) for p in t.split(".")]):
        if tag == "0":
            continue
        parent = tag.rsplit(".", 1)[0]
        if parent not in nodes:
            raise ValueError(f"rstar_jax/extract/trees.py: record {record.get('id')!r} node {tag!r} has no parent")
        nodes[parent].children.append(nodes[tag])
    _count(nodes["0"])
    return nodes["0"]


def _count(node: Node) -> None:
    """Post-order: answer-leaf counts of every subtree."""
    if node.kind == "answer":
        node.n_correct, node.n_wrong = int(bool(node.correct)), int(not node.correct)
    for child in node.children:
        _count(child)
        node.n_correct += child.n_correct
        node.n_wrong += child.n_wrong


def answer_paths(root: Node) -> Iterator[AnswerPath]:
    """Every root -> answer-leaf path in depth-first tag order."""

    def walk(node: Node, path: tuple[Node, ...]) -> Iterator[AnswerPath]:
        if node.kind == "answer":
            yield AnswerPath(
                texts=tuple(n.text for n in path),
                qs=tuple(n.q for n in path),
                correct=bool(node.correct),
                failed=any(n.failed for n in path),
            )
        for child in node.children:
            yield from walk(child, (*path, child))

    return walk(root, ())


def classify(trajs: list[AnswerPath]) -> Difficulty:
    """easy: every answer trajectory correct; hard: none correct (or no answer at all); medium: mixed."""
    n_correct = sum(t.correct for t in trajs)
    if n_correct == 0:
        return Difficulty.HARD
    return Difficulty.EASY if n_correct == len(trajs) else Difficulty.MEDIUM
