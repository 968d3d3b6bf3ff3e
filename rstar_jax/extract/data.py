"""SFT records and PPM preference pairs from search-tree records (rstar_reference.md Part A; Part B §8).

SFT: per problem, the top-2 correct trajectories by (mean step Q, min step Q) descending, never one with a
failed execution. Output `{"query", "response", "id"}` (the reference SFT trainer reads query / response).

PPM pairs, per problem:
  * intermediate steps: a BFS over "search nodes" from the root. Among the non-answer children of a search
    node (siblings sharing its prefix), chosen = those whose subtree holds a correct answer, highest Q first;
    rejected = those whose subtree holds a wrong answer, lowest Q first. Take 2 x 2; 1 x up to 4 when only one
    chosen exists; up to 4 x 1 when only one rejected exists. Keep a pair when Q(chosen) - Q(rejected) >= margin.
    The next search nodes are the children that lead to both correct and wrong answers.
  * final step: 2 correct vs 2 wrong full trajectories (highest / lowest mean Q; the same 1 x 4 / 4 x 1 rule),
    with prompt = the bare question prompt, so prompt + pos is the full PPM input.
  * edit distance (reference `train/sample_rm_data.py`, Part B §8.2): with `min_edit_distance` > 0 a step pair
    whose two steps are fewer than that many character edits apart (Levenshtein) is dropped (reference: 20).
    Final-step pairs follow the paper, which has no such filter, and are kept.
Output `{"prompt", "pos", "neg", "pos_count", "neg_count", "id", "kind": "step" | "final"}`; `pos_count` and
`neg_count` are the group sizes, the pair weight is 1 / (pos_count * neg_count).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from rstar_jax.extract.distance import edit_distance
from rstar_jax.extract.trees import AnswerPath, Difficulty, Node, answer_paths, build_tree, classify
from rstar_jax.search.steps import build_prompt

__all__ = [
    "RoundData",
    "edit_filter",
    "extract_round",
    "orm_pairs",
    "ppm_pairs",
    "pqm_values",
    "reward_model_data",
    "sft_records",
]


def _take(chosen: list[Any], rejected: list[Any]) -> tuple[list[Any], list[Any]]:
    """2 x 2, or 1 x up to 4 / up to 4 x 1 when one side has a single member; ([], []) if a side is empty."""
    if not chosen or not rejected:
        return [], []
    if len(chosen) == 1:
        return chosen[:1], rejected[:4]
    if len(rejected) == 1:
        return chosen[:4], rejected[:1]
    return chosen[:2], rejected[:2]


def _rank(t: AnswerPath) -> tuple[float, float]:
    return (t.mean_q, t.min_q)


def sft_records(record: dict[str, Any], per_problem: int = 2) -> list[dict[str, Any]]:
    """The SFT records of one tree record (module docstring)."""
    good = [t for t in answer_paths(build_tree(record)) if t.correct and not t.failed]
    good.sort(key=_rank, reverse=True)  # stable: earlier trajectories win exact ties
    return [
        {"query": record["question"], "response": t.response.strip(), "id": record["id"]} for t in good[:per_problem]
    ]


def _pair(record: dict[str, Any], kind: str, prompt: str, pos: str, neg: str, n_pos: int, n_neg: int) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "pos": pos,
        "neg": neg,
        "pos_count": n_pos,
        "neg_count": n_neg,
        "id": record["id"],
        "kind": kind,
    }


def edit_filter(pairs: list[dict[str, Any]], min_edit_distance: int) -> tuple[list[dict[str, Any]], int]:
    """`pairs` without the step pairs whose `pos` and `neg` are fewer than `min_edit_distance` character edits
    apart (0 = keep all), and how many were removed."""
    if min_edit_distance <= 0:
        return pairs, 0
    limit = min_edit_distance - 1  # only "below the threshold or not" matters
    kept = [p for p in pairs if p["kind"] != "step" or edit_distance(p["pos"], p["neg"], limit) >= min_edit_distance]
    return kept, len(pairs) - len(kept)


def ppm_pairs(record: dict[str, Any], margin: float = 0.5, min_edit_distance: int = 0) -> list[dict[str, Any]]:
    """The PPM pairs of one tree record (module docstring): step pairs in BFS order, then final-step pairs."""
    root = build_tree(record)
    question = record["question"]
    out: list[dict[str, Any]] = []
    frontier: list[tuple[Node, tuple[str, ...]]] = [(root, ())]
    while frontier:
        nxt: list[tuple[Node, tuple[str, ...]]] = []
        for node, texts in frontier:
            steps = [c for c in node.children if c.kind != "answer"]
            chosen = sorted((c for c in steps if c.n_correct > 0), key=lambda c: -c.q)
            rejected = sorted((c for c in steps if c.n_wrong > 0), key=lambda c: c.q)
            pos, neg = _take(chosen, rejected)
            prompt = build_prompt(question, texts)
            for c in pos:
                for r in neg:
                    if c is not r and c.q - r.q >= margin:
                        out.append(_pair(record, "step", prompt, c.text, r.text, len(pos), len(neg)))
            nxt.extend((c, (*texts, c.text)) for c in steps if c.n_correct > 0 and c.n_wrong > 0)
        frontier = nxt
    trajs = list(answer_paths(root))
    right = sorted((t for t in trajs if t.correct), key=_rank, reverse=True)
    wrong = sorted((t for t in trajs if not t.correct), key=_rank)
    pos_t, neg_t = _take(right, wrong)
    prompt = build_prompt(question, ())
    out.extend(
        _pair(record, "final", prompt, c.response, r.response, len(pos_t), len(neg_t)) for c in pos_t for r in neg_t
    )
    return edit_filter(out, min_edit_distance)[0]


def orm_pairs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """ORM ablation view (paper Table 8): every correct x wrong pair of full trajectories, counts = group sizes."""
    trajs = list(answer_paths(build_tree(record)))
    right, wrong = [t for t in trajs if t.correct], [t for t in trajs if not t.correct]
    prompt = build_prompt(record["question"], ())
    n_pos, n_neg = len(right), len(wrong)
    return [_pair(record, "final", prompt, c.response, r.response, n_pos, n_neg) for c in right for r in wrong]


def pqm_values(record: dict[str, Any]) -> list[dict[str, Any]]:
    """PQM ablation view (paper Table 8): `{text: prompt + path to the node, q: its Q, id}` for every node that
    leads to an answer (the root excluded)."""
    out: list[dict[str, Any]] = []

    def walk(node: Node, texts: tuple[str, ...]) -> None:
        for child in node.children:
            path = (*texts, child.text)
            if child.n_correct + child.n_wrong > 0:
                out.append({"text": build_prompt(record["question"], path), "q": child.q, "id": record["id"]})
            walk(child, path)

    walk(build_tree(record), ())
    return out


def reward_model_data(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(orm_pairs, pqm_values)` of every tree record, in record order: the data of the paper's Table 8 ORM and PQM
    (the extract stage's `orm.json` and `pqm.json`)."""
    records = list(records)
    return [p for r in records for p in orm_pairs(r)], [v for r in records for v in pqm_values(r)]


def _key(rec: dict[str, Any], fields: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps([rec[f] for f in fields], ensure_ascii=False).encode()).hexdigest()


@dataclasses.dataclass
class RoundData:
    """One round's extraction: records, pairs, their dedup keys (pass to the next round) and statistics."""

    sft: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    seen: set[str]
    stats: dict[str, Any]


def extract_round(
    records: Iterable[dict[str, Any]],
    *,
    seen: set[str] | None = None,
    margin: float = 0.5,
    min_edit_distance: int = 0,
    per_problem: int = 2,
) -> RoundData:
    """SFT records and PPM pairs of all tree records, minus those already in `seen` (earlier rounds).

    Stats: problems / SFT records / pairs in total and per difficulty class, duplicates dropped, and the step
    pairs the edit-distance filter removed (`pairs_removed_edit_distance`, counted before the dedup).
    """
    seen = set() if seen is None else set(seen)
    sft: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    by_class: dict[str, collections.Counter[str]] = {d.value: collections.Counter() for d in Difficulty}
    dropped = removed = 0
    for record in records:
        difficulty = classify(list(answer_paths(build_tree(record)))).value
        by_class[difficulty]["problems"] += 1
        record_pairs, n_removed = edit_filter(ppm_pairs(record, margin), min_edit_distance)
        removed += n_removed
        for kind, items, fields, sink in (
            ("sft", sft_records(record, per_problem), ("query", "response"), sft),
            ("pairs", record_pairs, ("prompt", "pos", "neg"), pairs),
        ):
            for item in items:
                key = _key(item, fields)
                if key in seen:
                    dropped += 1
                    continue
                seen.add(key)
                sink.append(item)
                by_class[difficulty][kind] += 1
    stats = {
        "problems": sum(c["problems"] for c in by_class.values()),
        "sft": len(sft),
        "pairs": len(pairs),
        "duplicates_dropped": dropped,
        "pairs_removed_edit_distance": removed,
        "by_difficulty": {d: {k: c[k] for k in ("problems", "sft", "pairs")} for d, c in by_class.items()},
    }
    return RoundData(sft, pairs, seen, stats)
