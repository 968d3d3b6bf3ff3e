"""Tests of the self-evolution round report: markdown percentages, JSON round-trip, PNGs, effects, missing tables."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from rstar_jax.data import Problem
from rstar_jax.evolve.evaluate import per_problem
from rstar_jax.evolve.intervals import paired_bootstrap
from rstar_jax.evolve.report import effects, validate_metrics, write_cumulative_report, write_round_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BANDS = ("gsm", "math", "olympiad")


def _table(gsm: int, math: int, olympiad: int, totals: tuple[int, int, int] = (200, 150, 50)) -> dict[str, Any]:
    table = {b: {"correct": c, "total": t} for b, c, t in zip(BANDS, (gsm, math, olympiad), totals, strict=True)}
    table["all"] = {"correct": gsm + math + olympiad, "total": sum(totals)}
    return table


def _round(r: int) -> dict[str, Any]:
    """Realistic metrics of round `r` (1..4): everything improves a little each round."""
    k = r - 1
    return {
        "round": r,
        "coverage": _table(150 + 12 * k, 80 + 15 * k, 10 + 6 * k),
        "policy_greedy": _table(60 + 10 * k, 30 + 8 * k, 3 + k),
        "ppm_fixed_policy": None if r == 1 else _table(90 + 5 * k, 50 + 5 * k, 8 + k),
        "system": _table(100 + 15 * k, 55 + 12 * k, 10 + 4 * k),
        "methods": {
            "samples": 8,
            "greedy": _table(60 + 10 * k, 30 + 8 * k, 3 + k),
            "majority_vote": _table(85 + 10 * k, 45 + 8 * k, 6 + k),
            "best_of_n": _table(95 + 12 * k, 50 + 10 * k, 8 + 2 * k),
            "mcts_ppm": _table(100 + 15 * k, 55 + 12 * k, 10 + 4 * k),
        },
        "ppm_pair_accuracy": None if r == 1 else 0.7 + 0.05 * k,
        "data": {"sft": 1200 + 300 * k, "pairs": 3400 + 500 * k, "trees": 600},
        "seconds": {"trees": 12.3, "extract": 0.4, "sft": 60.1, "ppm": 40.2, "evaluate": 30.0},
    }


def _pct(count: dict[str, int]) -> str:
    return f"{100 * count['correct'] / count['total']:.1f}% ({count['correct']}/{count['total']})"


def _row(markdown: str, first_cell: str, after: str) -> str:
    """The table row starting with `first_cell` in the first table after the line `after`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    return next(line for line in lines[start:] if line.startswith(f"| {first_cell} |"))


def _assert_png(path: Path, min_width: int) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[2] in (3, 4)
    assert image.std() > 0.01  # something was drawn, not a blank canvas


def test_round_report_files_and_percentages(tmp_path: Path) -> None:
    metrics = _round(2)
    paths = write_round_report(tmp_path, metrics)
    assert paths == {k: tmp_path / f"round_2.{k}" for k in ("json", "md", "png")}
    assert json.loads(paths["json"].read_text()) == metrics
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    md = paths["md"].read_text()
    for band in (*BANDS, "all"):
        expected = [_pct(metrics[k][band]) for k in ("coverage", "policy_greedy", "ppm_fixed_policy", "system")]
        assert _row(md, band, "## Accuracy by band") == f"| {band} | " + " | ".join(expected) + " |"
    mcts = metrics["methods"]["mcts_ppm"]
    assert (
        _row(md, "MCTS + PPM", "## Methods")
        == "| MCTS + PPM | " + " | ".join(_pct(mcts[b]) for b in (*BANDS, "all")) + " |"
    )
    best = metrics["methods"]["best_of_n"]["gsm"]
    assert _row(md, "best-of-8", "## Methods").startswith(f"| best-of-8 | {_pct(best)} |")
    assert "- PPM held-out pair accuracy: 75.0%" in md.splitlines()
    _assert_png(paths["png"], min_width=800)
    again = write_round_report(tmp_path / "again", metrics)  # deterministic bytes: no timestamp or version stamp
    assert all(again[k].read_bytes() == paths[k].read_bytes() for k in paths)


def test_missing_tables_render_as_dash(tmp_path: Path) -> None:
    metrics = {"round": 3, "coverage": _table(1, 2, 3), "policy_greedy": None, "methods": None}
    md = write_round_report(tmp_path, metrics)["md"].read_text()
    assert _row(md, "all", "## Accuracy by band") == f"| all | {_pct(metrics['coverage']['all'])} | — | — | — |"
    assert _row(md, "greedy", "## Methods") == "| greedy | — |"
    assert "PPM held-out pair accuracy: —" in md
    paths = write_cumulative_report(tmp_path, [metrics, {"round": 1}])
    report = paths["md"].read_text()
    assert _row(report, "all", "## Table 2") == f"| all | — | {_pct(metrics['coverage']['all'])} |"
    assert _row(report, "all", "## Table 6") == "| all | — | — |"
    assert [e["holds"] for e in json.loads(paths["json"].read_text())["effects"]] == [None] * 7
    for key in ("coverage", "policy_greedy", "ppm_fixed_policy", "system", "methods"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC


def test_all_band_is_summed_when_absent_and_other_band_names_work(tmp_path: Path) -> None:
    table = {"easy": {"correct": 3, "total": 4}, "hard": {"correct": 1, "total": 6}}
    md = write_round_report(tmp_path, {"round": 1, "system": table})["md"].read_text()
    assert _row(md, "easy", "## Accuracy by band").endswith("| 75.0% (3/4) |")
    assert _row(md, "all", "## Accuracy by band").endswith("| 40.0% (4/10) |")
    only_all = {"round": 1, "coverage": {"all": {"correct": 7, "total": 8}}}
    md = write_round_report(tmp_path, only_all)["md"].read_text()
    assert _row(md, "all", "## Accuracy by band").startswith("| all | 87.5% (7/8) |")


def test_cumulative_report(tmp_path: Path) -> None:
    rounds = [_round(r) for r in (1, 2, 3, 4)]
    paths = write_cumulative_report(tmp_path, list(reversed(rounds)))  # sorted by round number
    md = paths["md"].read_text()
    assert "## Paper effects at toy scale" in md
    for key, title in (("coverage", "## Table 2"), ("policy_greedy", "## Table 3"), ("system", "## Table 6")):
        for band in (*BANDS, "all"):
            cells = " | ".join(_pct(m[key][band]) for m in rounds)
            assert _row(md, band, title) == f"| {band} | {cells} |"
    assert (
        _row(md, "all", "## Table 4")
        == "| all | — | " + " | ".join(_pct(m["ppm_fixed_policy"]["all"]) for m in rounds[1:]) + " |"
    )
    assert (
        _row(md, "majority vote", "## Methods")
        == "| majority vote | " + " | ".join(_pct(m["methods"]["majority_vote"]["all"]) for m in rounds) + " |"
    )
    summary = json.loads(paths["json"].read_text())
    assert summary["rounds"] == rounds
    cov = rounds[2]["coverage"]["olympiad"]
    assert summary["accuracy"]["coverage"]["olympiad"]["3"] == pytest.approx(cov["correct"] / cov["total"])
    assert summary["accuracy"]["ppm_fixed_policy"]["all"]["1"] is None
    assert [e["holds"] for e in summary["effects"]] == [True] * 7  # from the counts: no per-problem data
    assert all(
        _row(md, f"{e['claim']} ({e['note']})", "## Paper").endswith("| — | — | yes | — |") for e in summary["effects"]
    )
    for key in ("coverage", "policy_greedy", "ppm_fixed_policy", "system", "methods"):
        assert paths[key] == tmp_path / f"report_{key}.png"
        _assert_png(paths[key], min_width=400)


def _bits(correct: int, total: int = 100) -> list[bool]:
    return [True] * correct + [False] * (total - correct)


def _cov(gsm: int, olympiad: int) -> list[bool]:
    """Coverage of 100 training problems: ids 0-79 in band gsm (the first `gsm` solved), 80-99 olympiad."""
    return _bits(gsm, 80) + _bits(olympiad, 20)


def _paired(r: int, coverage: list[bool], **methods: list[bool] | None) -> dict[str, Any]:
    """Round `r`'s metrics (`_round`) plus per-problem outcomes: training ids train/<i>, held-out ids test/<i>."""
    m = _round(r)
    per = {"coverage": {f"train/{i}": ok for i, ok in enumerate(coverage)}}
    per |= {k: {f"test/{i}": ok for i, ok in enumerate(v)} for k, v in methods.items() if v is not None}
    m["per_problem"] = per
    m["problem_bands"] = {f"train/{i}": "gsm" if i < 80 else "olympiad" for i in range(len(coverage))}
    return m


def _two(cov: tuple[list[bool], list[bool]], greedy: tuple[int, int], mcts: int, vote: int, best: int, fixed: int):
    """Rounds 1 and 4 with per-problem outcomes; each int solves the first that many of 100 held-out problems.

    Round 1's MCTS+PPM solves 44 and it has no best-of-N; `fixed` is round 4's MCTS with the round-1 policy.
    """
    first = _paired(1, cov[0], greedy=_bits(greedy[0]), mcts_ppm=_bits(44), majority_vote=_bits(0), best_of_n=None)
    last = _paired(4, cov[1], greedy=_bits(greedy[1]), mcts_ppm=_bits(mcts), majority_vote=_bits(vote),
                   best_of_n=_bits(best), ppm_fixed_policy=_bits(fixed))  # fmt: skip
    return [first, last]


def test_paired_bootstrap_known_differences() -> None:
    assert paired_bootstrap([True] * 30, [False] * 30) == (100.0, 100.0)
    assert paired_bootstrap([False] * 30, [True] * 30) == (-100.0, -100.0)
    same = np.random.default_rng(1).random(50) < 0.4
    assert paired_bootstrap(same, same) == (0.0, 0.0)
    a, b = np.random.default_rng(2).random((2, 200)) < np.array([[0.6], [0.4]])
    low, high = paired_bootstrap(a, b)
    point = 100 * (a.mean() - b.mean())
    assert -100 <= low < point < high <= 100 and 5 < high - low < 30  # about ±1.96 * 4.5 points
    assert paired_bootstrap(a, b) == (low, high)  # seeded: the same interval every time
    assert paired_bootstrap(a, b, seed=1) != (low, high)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:-1])


def test_effects_hold_exactly_at_thresholds() -> None:
    rounds = _two((_cov(40, 5), _cov(40, 6)), greedy=(40, 50), mcts=60, vote=60, best=60, fixed=45)
    found = effects(rounds)
    assert [e.holds for e in found] == [True] * 7
    assert [e.difference for e in found] == [1.0, 5.0, 10.0, 10.0, 0.0, 0.0, 1.0]
    assert [e.n for e in found] == [100, 20, 100, 100, 100, 100, 100]
    assert "olympiad" in found[1].claim and found[1].left == "round 4 coverage [olympiad]"
    assert found[6].right == "round 1 MCTS + PPM"  # (d): round 1 has no ppm_fixed_policy
    for e in found:
        assert e.interval is not None and e.interval[0] <= e.difference <= e.interval[1]
    assert found[4].interval == (0.0, 0.0) and found[4].clears  # identical outcomes
    assert found[3].clears is False and found[3].interval[0] < 10  # +10 on 10 problems: the interval straddles 10


def test_effects_fail_just_below_thresholds() -> None:
    rounds = _two((_cov(40, 5), _cov(41, 5)), greedy=(40, 49), mcts=58, vote=60, best=60, fixed=44)
    found = effects(rounds)
    assert [e.holds for e in found] == [True, False, False, False, False, False, False]
    assert [e.clears for e in found[1:]] == [False] * 6
    rounds[0]["per_problem"]["ppm_fixed_policy"] = {f"test/{i}": i < 40 for i in range(100)}
    (d,) = effects(rounds)[6:]
    assert d.right == "round 1 MCTS + PPM (round-1 policy)" and d.left == "round 4 MCTS + PPM (round-1 policy)"
    assert d.holds is True and d.difference == 4.0  # round 1's own ppm_fixed_policy outcomes are preferred


def test_effects_pair_problems_by_id() -> None:
    rounds = _two((_bits(0), _bits(100)), greedy=(0, 0), mcts=0, vote=0, best=0, fixed=0)
    rounds[1]["per_problem"]["coverage"] = {f"train/{i}": True for i in range(50, 150)}  # 50 shared ids
    cov = effects(rounds)[0]
    assert (cov.n, cov.difference, cov.interval, cov.holds, cov.clears) == (50, 100.0, (100.0, 100.0), True, True)
    rounds[1]["per_problem"]["coverage"] = {"train/elsewhere": True}
    assert effects(rounds)[0].holds is None and "no problem in both" in effects(rounds)[0].note


def test_effects_fall_back_to_counts_and_report_missing_data() -> None:
    rounds = [_round(1), _round(4)]
    for m in rounds:
        m["methods"] = None  # greedy falls back to policy_greedy, MCTS+PPM to system; no majority vote
    found = effects(rounds)
    assert [e.holds for e in found] == [True, True, True, True, None, None, True]
    assert all(e.interval is None and e.n is None and e.clears is None for e in found)
    assert "counts only" in found[0].note and found[3].right == "round 4 greedy"
    assert found[2].difference == pytest.approx(100 * (150 - 93) / 400)
    assert [e.holds for e in effects(rounds[:1])] == [None, None, None, True, None, None, None]  # one round
    assert "needs ≥ 2 rounds" in effects(rounds[:1])[0].note
    assert [e.holds for e in effects([])] == [None] * 7


def test_cumulative_report_prints_intervals(tmp_path: Path) -> None:
    rounds = _two((_cov(40, 5), _cov(40, 6)), greedy=(40, 50), mcts=60, vote=60, best=60, fixed=45)
    paths = write_cumulative_report(tmp_path, rounds)
    md, summary = paths["md"].read_text(), json.loads(paths["json"].read_text())
    header = _row(md, "claim", "## Paper effects")
    assert header.split(" | ")[4:] == ["95% interval", "n", "holds", "interval clears |"]
    greedy = summary["effects"][3]
    low, high = greedy["interval"]
    row = _row(md, greedy["claim"], "## Paper effects")
    assert f"| 60.0% vs 50.0% | +10.0 | [{low:+.1f}, {high:+.1f}] | 100 | yes | no |" in row
    assert "| +0.0 | [+0.0, +0.0] | 100 | yes | yes |" in _row(md, summary["effects"][4]["claim"], "## Paper effects")
    assert f"[{low:+.1f}, {high:+.1f}]" in greedy["measured"]
    assert write_cumulative_report(tmp_path / "again", rounds)["md"].read_bytes() == paths["md"].read_bytes()


def test_round_metrics_per_problem_outcomes(tmp_path: Path) -> None:
    """evaluate.per_problem reads the method files back; round_trees.covered marks trees with a correct answer leaf."""
    from rstar_jax.evolve.round_trees import covered as _covered

    (tmp_path / "eval").mkdir()
    rows = [{"id": "t0", "answer": "1", "correct": True, "band": "gsm"}, {"id": "t1", "answer": None, "correct": False}]
    (tmp_path / "eval" / "greedy.json").write_text(json.dumps(rows))
    (tmp_path / "eval" / "mcts_ppm.json").write_text(json.dumps(rows[::-1]))
    assert per_problem(tmp_path / "eval") == {
        "greedy": {"t0": True, "t1": False},
        "mcts_ppm": {"t1": False, "t0": True},
    }
    leaf = lambda value: {"terminal_kind": "answer", "value": value}
    trees = {"a": [{"id": "p0", "rstar": {"0": {}, "0.1": leaf(1.0)}}, {"id": "p1", "rstar": {"0.1": leaf(-1.0)}}],
             "b": [{"id": "p2", "rstar": {"0.2": leaf(1.0)}}]}  # fmt: skip
    (tmp_path / "trees").mkdir()
    for name, records in trees.items():
        (tmp_path / "trees" / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records))
    train = [Problem(id=f"p{i}", question=f"q{i}", answer="1") for i in range(4)]
    ctx = SimpleNamespace(
        train=train, run_dir=SimpleNamespace(round=lambda r: SimpleNamespace(trees=tmp_path / "trees"))
    )
    files = {"files": {"a.jsonl": {}, "b.jsonl": {}}}
    assert _covered(ctx, 2, files) == {"p0": True, "p1": False, "p2": True, "p3": False}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("round"), "'round'"),
        (lambda m: m["coverage"].update(math={"correct": 151, "total": 150}), "round 2: coverage.math"),
        (lambda m: m["methods"]["best_of_n"].update(all={"correct": 401, "total": 400}), "round 2: methods.best_of_n"),
        (lambda m: m["system"].update(gsm={"correct": 1.5, "total": 2}), "round 2: system.gsm"),
        (lambda m: m.update(policy_greedy=[1, 2]), "round 2: policy_greedy"),
        (lambda m: m.update(ppm_pair_accuracy=87.0), "round 2: ppm_pair_accuracy"),
        (lambda m: m.update(per_problem={"greedy": {"test/0": 1}}), "round 2: per_problem.greedy"),
        (lambda m: m.update(per_problem=[True]), "round 2: per_problem"),
    ],
)
def test_validation_names_round_and_key(tmp_path: Path, change: Any, message: str) -> None:
    metrics = copy.deepcopy(_round(2))
    change(metrics)
    with pytest.raises(ValueError, match=message):
        validate_metrics(metrics)
    with pytest.raises(ValueError, match=message):
        write_round_report(tmp_path, metrics)
    assert not list(tmp_path.iterdir())  # nothing written on invalid input


def test_duplicate_rounds_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="round 2"):
        write_cumulative_report(tmp_path, [_round(2), _round(2)])


def test_a_finished_rounds_report_is_reused_only_while_its_figures_and_files_are_unchanged(tmp_path: Path) -> None:
    from rstar_jax.evolve.rounds import _written_report

    metrics = _round(2)
    assert _written_report(tmp_path, metrics) is None  # nothing written yet
    (tmp_path / "trees.html").write_text("<html></html>")
    write_round_report(tmp_path, metrics | {"links": {"search trees": "trees.html"}})
    reused = _written_report(tmp_path, copy.deepcopy(metrics))
    assert reused == json.loads(json.dumps(metrics)) | {"links": {"search trees": "trees.html"}}
    changed = copy.deepcopy(metrics)
    changed["seconds"]["trees"] += 1.0  # e.g. a stage that ran again
    assert _written_report(tmp_path, changed) is None
    (tmp_path / "trees.html").unlink()  # a linked file is gone: draw it all again
    assert _written_report(tmp_path, metrics) is None
