"""One search-tree record as the viewer shows it: every node's fields, and where the extracted data lies in it.

    view = view_tree(record, margin=0.5, per_problem=2)   # a record of a tree file (`rstar_jax/search/records.py`)
    view.root.children[0].code, view.root.children[0].q, view.sft_count, view.pair_counts

The training data is extracted by `rstar_jax.extract` itself (`sft_records`, `ppm_pairs`, the same functions the
rounds call, with the round's `evolve.sft_per_problem` and `evolve.pair_margin`); this module only finds each
extracted item's nodes again, by text:
  * an SFT record's response is the stripped concatenation of a root -> answer path's step texts: every node of
    the first such path (depth-first tag order, the order `sft_records` breaks ties in) gets `sft = [k]`;
  * a step pair's `prompt` is the question prompt plus the texts of the parent's path, `pos` / `neg` a child's
    text: that child gets `chosen` / `rejected` `[j]` (j counts the problem's pairs from 1, in extraction order);
  * a final pair's `pos` / `neg` is a whole trajectory: its answer leaf gets the mark.
Test-mode trees (`mode == "test"`) are not graded, so nothing is extracted from them and no answer is marked
correct or wrong.

PPM value: the search records it as a node's `prior` when a PPM guided it (`mode` ppm_augmented or test): new
non-terminal steps (and, at test time, answers) are scored by the PPM; code-error and too-deep dead ends, training
answers (valued against the ground truth) and the root never are (`rstar_jax/search/driver.py`, `_apply`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rstar_jax.extract import Node, build_tree, ppm_pairs, sft_records
from rstar_jax.search.steps import build_prompt

__all__ = ["ViewNode", "ViewTree", "view_tree"]

_UNSCORED = ("code_errors", "too_deep")


@dataclasses.dataclass
class ViewNode:
    """One node: the record's fields under plain names, the marks of the extracted data, the children."""

    tag: str
    text: str  # the step as generated, with its <output> block
    code: str  # the step's code (`action_input`), "" for a step without code
    output: str | None  # the execution's output, or its error when `error`; None: nothing was executed
    error: bool
    q: float
    visits: int
    ppm: float | None
    kind: str  # terminal kind: none / answer / code_errors / too_deep / exhausted
    answer: str | None
    correct: bool | None  # answer leaves of graded (non-test) trees only
    sft: list[int] = dataclasses.field(default_factory=list)
    chosen: list[int] = dataclasses.field(default_factory=list)
    rejected: list[int] = dataclasses.field(default_factory=list)
    children: list[ViewNode] = dataclasses.field(default_factory=list)

    def walk(self) -> list[ViewNode]:
        """This node and its subtree, depth first in tag order."""
        return [self, *(n for c in self.children for n in c.walk())]


@dataclasses.dataclass
class ViewTree:
    """One problem's tree with its record's header fields and the counts of its extracted data."""

    id: str
    question: str
    reference: Any  # the ground-truth answer (a string or list), None in test mode
    mode: str
    rollouts: int | None
    best_answer: str | None
    root: ViewNode
    sft_count: int
    pair_counts: dict[str, int]  # "step" / "final" -> pairs
    graded: bool

    @property
    def num_nodes(self) -> int:
        return len(self.root.walk())


def _ppm(state: dict[str, Any], tag: str, mode: str) -> float | None:
    kind = state.get("terminal_kind")
    scored = mode != "terminal" and tag != "0" and kind not in _UNSCORED and (kind != "answer" or mode == "test")
    return float(state.get("prior", 0.0)) if scored else None


def _view(node: Node, rstar: dict[str, dict[str, Any]], mode: str) -> ViewNode:
    state = rstar[node.tag]
    graded = mode != "test"
    return ViewNode(
        tag=node.tag,
        text=node.text,
        code=str(state.get("action_input") or ""),
        output=state.get("observation"),
        error=node.failed,
        q=node.q,
        visits=int(state.get("visit_count", 0)),
        ppm=_ppm(state, node.tag, mode),
        kind=node.kind,
        answer=state.get("answer"),
        correct=node.correct if graded else None,
        children=[_view(c, rstar, mode) for c in node.children],
    )


def _paths(root: ViewNode) -> list[tuple[ViewNode, tuple[ViewNode, ...]]]:
    """(node, its path from depth 1 to the node itself) for every node below the root, depth first."""
    out: list[tuple[ViewNode, tuple[ViewNode, ...]]] = []

    def walk(node: ViewNode, path: tuple[ViewNode, ...]) -> None:
        for child in node.children:
            out.append((child, (*path, child)))
            walk(child, (*path, child))

    walk(root, ())
    return out


def _mark(record: dict[str, Any], root: ViewNode, margin: float, per_problem: int) -> tuple[int, dict[str, int]]:
    """Marks the nodes of the record's SFT records and PPM pairs; returns their counts."""
    paths = _paths(root)
    leaves = [(n, p, "".join(x.text for x in p)) for n, p in paths if n.kind == "answer"]
    sft = sft_records(record, per_problem)
    used: set[str] = set()
    for k, item in enumerate(sft, start=1):
        found = next((p for n, p, text in leaves if n.tag not in used and text.strip() == item["response"]), ())
        used |= {found[-1].tag} if found else set()
        for node in found:
            node.sft.append(k)
    question = record["question"]
    steps: dict[tuple[str, str], ViewNode] = {}
    for node, path in paths:
        steps.setdefault((build_prompt(question, tuple(x.text for x in path[:-1])), node.text), node)
    finals = {text: n for n, _, text in reversed(leaves)}  # the first leaf of each trajectory text
    pairs = ppm_pairs(record, margin)
    for j, pair in enumerate(pairs, start=1):
        if pair["kind"] == "final":
            pos, neg = finals.get(pair["pos"]), finals.get(pair["neg"])
        else:
            pos, neg = steps.get((pair["prompt"], pair["pos"])), steps.get((pair["prompt"], pair["neg"]))
        if pos is not None:
            pos.chosen.append(j)
        if neg is not None:
            neg.rejected.append(j)
    counts = {kind: sum(p["kind"] == kind for p in pairs) for kind in ("step", "final")}
    return len(sft), counts


def view_tree(record: dict[str, Any], *, margin: float, per_problem: int) -> ViewTree:
    """The view of one tree record (module docstring); raises ValueError naming the record for a malformed one."""
    mode = str(record.get("mode", "terminal"))
    rstar = record.get("rstar")
    root = _view(build_tree(record), rstar, mode)  # build_tree checks the nodes (tags, parents, required keys)
    graded = mode != "test"
    if "question" not in record:
        raise ValueError(f"record {record.get('id')!r} has no 'question'")
    sft_count, pair_counts = _mark(record, root, margin, per_problem) if graded else (0, {"step": 0, "final": 0})
    return ViewTree(
        id=str(record.get("id")),
        question=str(record["question"]),
        reference=record.get("answer"),
        mode=mode,
        rollouts=record.get("rollouts"),
        best_answer=record.get("best_answer"),
        root=root,
        sft_count=sft_count,
        pair_counts=pair_counts,
        graded=graded,
    )
