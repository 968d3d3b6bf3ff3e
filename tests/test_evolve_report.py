"""Tests of the self-evolution round report: markdown percentages, JSON round-trip, PNGs, effects, missing tables."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

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
    assert [e["holds"] for e in json.loads(paths["json"].read_text())["effects"]] == [None] * 4
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
    assert [e["holds"] for e in summary["effects"]] == [True, True, True, True]
    assert all(f"| {e['claim']} | {e['measured']} | yes |" in md for e in summary["effects"])
    for key in ("coverage", "policy_greedy", "ppm_fixed_policy", "system", "methods"):
        assert paths[key] == tmp_path / f"report_{key}.png"
        _assert_png(paths[key], min_width=400)


def _with_all(metrics: dict[str, Any], key: str, correct: int, total: int = 100) -> None:
    """Sets the "all" count of `key` ("methods.<name>" for a method) to correct/total."""
    table = metrics["methods"][key.split(".")[1]] if key.startswith("methods.") else metrics[key]
    table["all"] = {"correct": correct, "total": total}


def _two_rounds(first: int, last: int, greedy: int, vote: int, coverage: tuple[int, ...]) -> list[dict[str, Any]]:
    rounds = [_round(r) for r in range(1, len(coverage) + 1)]
    for m, c in zip(rounds, coverage, strict=True):
        _with_all(m, "coverage", c)
    _with_all(rounds[0], "methods.mcts_ppm", first)
    _with_all(rounds[-1], "methods.mcts_ppm", last)
    _with_all(rounds[-1], "methods.greedy", greedy)
    _with_all(rounds[-1], "methods.majority_vote", vote)
    return rounds


def test_effects_pass_exactly_at_thresholds() -> None:
    found = effects(_two_rounds(first=40, last=55, greedy=45, vote=55, coverage=(50, 50, 60)))
    assert [e.holds for e in found] == [True, True, True, True]
    assert "+15.0 points" in found[0].measured and "+10.0 points" in found[1].measured


def test_effects_fail_just_below_thresholds() -> None:
    found = effects(_two_rounds(first=41, last=55, greedy=46, vote=56, coverage=(60, 50, 70)))
    assert [e.holds for e in found] == [False, False, False, False]
    assert effects(_two_rounds(40, 80, 20, 20, coverage=(50, 50)))[3].holds is False  # flat: last must exceed first


def test_effects_fall_back_and_report_missing_data() -> None:
    rounds = _two_rounds(first=40, last=70, greedy=50, vote=60, coverage=(50, 60))
    for m in rounds:
        m["methods"] = None  # MCTS+PPM falls back to system, greedy to policy_greedy
    _with_all(rounds[0], "system", 30)
    _with_all(rounds[1], "system", 50)
    _with_all(rounds[1], "policy_greedy", 40)
    found = effects(rounds)
    assert [e.holds for e in found] == [True, True, None, True]
    assert "(system)" in found[0].measured and "(policy_greedy)" in found[1].measured
    assert [e.holds for e in effects(rounds[:1])][0] is None  # one round: nothing to compare with
    assert [e.holds for e in effects([])] == [None] * 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("round"), "'round'"),
        (lambda m: m["coverage"].update(math={"correct": 151, "total": 150}), "round 2: coverage.math"),
        (lambda m: m["methods"]["best_of_n"].update(all={"correct": 401, "total": 400}), "round 2: methods.best_of_n"),
        (lambda m: m["system"].update(gsm={"correct": 1.5, "total": 2}), "round 2: system.gsm"),
        (lambda m: m.update(policy_greedy=[1, 2]), "round 2: policy_greedy"),
        (lambda m: m.update(ppm_pair_accuracy=87.0), "round 2: ppm_pair_accuracy"),
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
