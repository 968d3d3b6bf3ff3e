"""Extraction on hand-built trees: SFT selection, PPM pair shapes (2x2, 1x4, 4x1), margin, final-step pairs,
failed-execution exclusion, difficulty classes, dedup across rounds, reference output formats."""

from __future__ import annotations

import json

from rstar_jax.extract import (
    Difficulty,
    answer_paths,
    build_tree,
    classify,
    extract_round,
    orm_pairs,
    ppm_pairs,
    pqm_values,
    sft_records,
)
from rstar_jax.search.steps import build_prompt


def node(text, q, kind="none", value=0.0, errors=0):
    return {"text": text, "q_value": q, "terminal_kind": kind, "value": value, "consecutive_errors": errors}


def ans(text, q, correct):
    return node(text, q, "answer", 1.0 if correct else -1.0)


def record(nodes, rid="p1"):
    return {"id": rid, "question": "Q?", "answer": "1", "rstar": {"0": node("", 0.0), **nodes}}


def _step_pairs(pairs):
    return [p for p in pairs if p["kind"] == "step"]


def _final_pairs(pairs):
    return [p for p in pairs if p["kind"] == "final"]


def test_two_by_two_with_margin_and_weights():
    nodes = {}
    for i, (q, ok) in enumerate([(0.9, True), (0.8, True), (0.7, True), (-0.5, False), (-0.6, False), (-0.9, False)]):
        nodes[f"0.{i + 1}"] = node(f"s{i + 1}", q)
        nodes[f"0.{i + 1}.1"] = ans(f"a{i + 1}", 1.0 if ok else -1.0, ok)
    pairs = _step_pairs(ppm_pairs(record(nodes)))
    assert {(p["pos"], p["neg"]) for p in pairs} == {("s1", "s6"), ("s1", "s5"), ("s2", "s6"), ("s2", "s5")}
    assert all(p["pos_count"] == 2 and p["neg_count"] == 2 for p in pairs)


def test_one_by_four_and_four_by_one():
    one_pos = {"0.1": node("c", 0.9), "0.1.1": ans("a", 1.0, True)}
    for i, q in enumerate([-0.1, -0.2, -0.3, -0.4, -0.5]):
        one_pos[f"0.{i + 2}"] = node(f"w{i}", q)
        one_pos[f"0.{i + 2}.1"] = ans("b", -1.0, False)
    pairs = _step_pairs(ppm_pairs(record(one_pos)))
    assert sorted(p["neg"] for p in pairs) == ["w1", "w2", "w3", "w4"]  # the 4 lowest Q
    assert all(p["pos"] == "c" and (p["pos_count"], p["neg_count"]) == (1, 4) for p in pairs)

    one_neg = {"0.1": node("w", -0.9), "0.1.1": ans("b", -1.0, False)}
    for i, q in enumerate([0.1, 0.2, 0.3, 0.4, 0.5]):
        one_neg[f"0.{i + 2}"] = node(f"c{i}", q)
        one_neg[f"0.{i + 2}.1"] = ans("a", 1.0, True)
    pairs = _step_pairs(ppm_pairs(record(one_neg)))
    assert sorted(p["pos"] for p in pairs) == ["c1", "c2", "c3", "c4"]  # the 4 highest Q
    assert all((p["pos_count"], p["neg_count"]) == (4, 1) for p in pairs)


def test_margin_filter_keeps_counts():
    nodes = {
        "0.1": node("c1", 0.5),
        "0.1.1": ans("a", 1.0, True),
        "0.2": node("c2", 0.3),
        "0.2.1": ans("a", 1.0, True),
        "0.3": node("w1", 0.1),
        "0.3.1": ans("b", -1.0, False),
        "0.4": node("w2", -0.2),
        "0.4.1": ans("b", -1.0, False),
    }
    pairs = _step_pairs(ppm_pairs(record(nodes)))
    # margins: c1-w2 0.7, c2-w2 0.5 (kept, >=), c1-w1 0.4, c2-w1 0.2 (dropped)
    assert {(p["pos"], p["neg"]) for p in pairs} == {("c1", "w2"), ("c2", "w2")}
    assert all((p["pos_count"], p["neg_count"]) == (2, 2) for p in pairs)
    assert len(_step_pairs(ppm_pairs(record(nodes), margin=0.75))) == 0


def test_deeper_search_nodes_share_prefix():
    nodes = {
        "0.1": node("x", 0.0),
        "0.1.1": node("good", 0.8),
        "0.1.1.1": ans("a", 1.0, True),
        "0.1.2": node("bad", -0.8),
        "0.1.2.1": ans("b", -1.0, False),
    }
    pairs = _step_pairs(ppm_pairs(record(nodes)))
    # the root has a single child (no rejected sibling): the pair comes from node 0.1, with its prefix
    assert [(p["prompt"], p["pos"], p["neg"]) for p in pairs] == [(build_prompt("Q?", ("x",)), "good", "bad")]


def test_final_step_trajectory_pairs():
    nodes = {
        "0.1": node("h", 0.9),
        "0.1.1": ans("A", 1.0, True),
        "0.2": node("m", 0.2),
        "0.2.1": ans("B", 1.0, True),
        "0.3": node("l", 0.1),
        "0.3.1": ans("C", 1.0, True),
        "0.4": node("x", -0.1),
        "0.4.1": ans("D", -1.0, False),
        "0.5": node("y", -0.9),
        "0.5.1": ans("E", -1.0, False),
        "0.6": node("z", -0.3),
        "0.6.1": ans("F", -1.0, False),
    }
    final = _final_pairs(ppm_pairs(record(nodes)))
    assert {(p["pos"], p["neg"]) for p in final} == {("hA", "yE"), ("hA", "zF"), ("mB", "yE"), ("mB", "zF")}
    assert all((p["pos_count"], p["neg_count"]) == (2, 2) for p in final)
    assert all(p["prompt"] == build_prompt("Q?", ()) for p in final)


def test_sft_top2_tiebreak_and_failed_exclusion():
    nodes = {
        "0.1": node("best", 0.9, errors=1),  # highest Q, but its code failed: excluded
        "0.1.1": ans("A", 1.0, True),
        "0.2": node("p", 0.5),
        "0.2.1": node("p2", 0.1),
        "0.2.1.1": ans("B", 1.0, True),  # mean (0.5+0.1+1)/3 = 0.533, min 0.1
        "0.3": node("q", 0.3),
        "0.3.1": node("q2", 0.3),
        "0.3.1.1": ans("C", 1.0, True),  # mean 0.533, min 0.3: wins the tie
        "0.4": node("r", 0.0),
        "0.4.1": ans("D", 1.0, True),  # mean 0.5
        "0.5": node("w", 0.99),
        "0.5.1": ans("E", -1.0, False),  # wrong
    }
    out = sft_records(record(nodes))
    assert [r["response"] for r in out] == ["qq2C", "pp2B"]
    assert set(out[0]) == {"query", "response", "id"} and out[0]["query"] == "Q?"


def test_difficulty_classes():
    easy = record({"0.1": ans("a", 1.0, True)})
    medium = record({"0.1": ans("a", 1.0, True), "0.2": ans("b", -1.0, False)})
    hard = record({"0.1": ans("b", -1.0, False), "0.2": node("x", 0.0, "code_errors")})
    none = record({"0.1": node("x", 0.0, "too_deep")})
    got = [classify(list(answer_paths(build_tree(r)))) for r in (easy, medium, hard, none)]
    assert got == [Difficulty.EASY, Difficulty.MEDIUM, Difficulty.HARD, Difficulty.HARD]


def test_extract_round_dedup_stats_and_reference_formats(tmp_path):
    nodes = {
        "0.1": node("c", 0.9),
        "0.1.1": ans("A", 1.0, True),
        "0.2": node("w", -0.9),
        "0.2.1": ans("B", -1.0, False),
    }
    r1 = extract_round([record(nodes, "p1"), record({"0.1": ans("a", 1.0, True)}, "p2")])
    assert r1.stats["by_difficulty"]["medium"] == {"problems": 1, "sft": 1, "pairs": 2}
    assert r1.stats["by_difficulty"]["easy"] == {"problems": 1, "sft": 1, "pairs": 0}
    assert r1.stats["sft"] == 2 and r1.stats["pairs"] == 2 and r1.stats["duplicates_dropped"] == 0
    r2 = extract_round([record(nodes, "p1")], seen=r1.seen)
    assert r2.sft == [] and r2.pairs == [] and r2.stats["duplicates_dropped"] == 3
    ref = "/work/shared/data/reference_records/"
    with open(ref + "sft_data_examples.json") as f:
        sft_keys = set(json.load(f)[0])
    with open(ref + "rm_data_examples.json") as f:
        rm_keys = set(json.load(f)[0])
    assert sft_keys <= set(r1.sft[0]) and rm_keys <= set(r1.pairs[0])


def test_ablation_views():
    nodes = {
        "0.1": node("c", 0.6),
        "0.1.1": ans("A", 1.0, True),
        "0.2": node("w", -0.4),
        "0.2.1": ans("B", -1.0, False),
        "0.3": node("d", 0.0, "too_deep"),
    }
    orm = orm_pairs(record(nodes))
    assert [(p["pos"], p["neg"], p["pos_count"], p["neg_count"]) for p in orm] == [("cA", "wB", 1, 1)]
    values = pqm_values(record(nodes))
    assert [(v["text"], v["q"]) for v in values] == [
        (build_prompt("Q?", ("c",)), 0.6),
        (build_prompt("Q?", ("c", "A")), 1.0),
        (build_prompt("Q?", ("w",)), -0.4),
        (build_prompt("Q?", ("w", "B")), -1.0),
    ]


def test_edit_distance_filter_drops_close_step_pairs_and_counts_them():
    """Reference sample_rm_data.py: a step pair whose steps are < 20 character edits apart is dropped (switch:
    min_edit_distance, 0 = off); final-step pairs are kept; extract_round counts the removed pairs."""
    far = "\n\n# Step 2: use the difference of the two totals instead\nx = total_a - total_b\n<end_of_step>"
    good = "\n\n# Step 2: add the two totals\nx = total_a + total_b\n<end_of_step>"
    near = "\n\n# Step 2: add the two totals\nx = total_a + total_c\n<end_of_step>"  # 1 edit from `good`
    nodes = {
        "0.1": node(good, 0.9),
        "0.1.1": ans("\n<answer>\\boxed{1}<end_of_answer>", 1.0, True),
        "0.2": node(near, -0.8),
        "0.2.1": ans("\n<answer>\\boxed{2}<end_of_answer>", -1.0, False),
        "0.3": node(far, -0.9),
        "0.3.1": ans("\n<answer>\\boxed{3}<end_of_answer>", -1.0, False),
    }
    rec = record(nodes)
    assert {p["neg"] for p in _step_pairs(ppm_pairs(rec))} == {near, far}
    kept = ppm_pairs(rec, min_edit_distance=20)
    assert [(p["pos"], p["neg"]) for p in _step_pairs(kept)] == [(good, far)]
    assert all(p["pos_count"] == 1 and p["neg_count"] == 2 for p in _step_pairs(kept))  # counts before filtering
    assert _final_pairs(kept) == _final_pairs(ppm_pairs(rec))  # final-step pairs: no edit-distance filter
    assert ppm_pairs(rec, min_edit_distance=0) == ppm_pairs(rec)
    data = extract_round([rec, record(nodes, "p2")], min_edit_distance=20)
    assert data.stats["pairs_removed_edit_distance"] == 2  # counted per tree, before the dedup (same question here)
    assert data.stats["pairs"] == len(data.pairs) == len(kept)
    assert extract_round([rec]).stats["pairs_removed_edit_distance"] == 0
