"""The round report's attachments: training curves from the jobs' metrics.jsonl, tree viewer pages of a sample of
each tree file, and the report's links to them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from matplotlib import image

from rstar_jax.evolve import report
from rstar_jax.evolve.report_assets import sample_ids, write_round_assets
from rstar_jax.workdir import RunDir
from tests.helpers_trees import tree_record


def _jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_sample_ids_are_evenly_spaced():
    ids = [f"p{i}" for i in range(10)]
    assert sample_ids(ids, 4) == ["p0", "p2", "p5", "p7"]
    assert sample_ids(ids[:3], 4) == ["p0", "p1", "p2"]


def test_round_assets_are_written_and_linked_from_the_round_report(tmp_path):
    rd = RunDir(tmp_path).round(2)
    _jsonl(rd.sft / "run" / "metrics.jsonl", [{"step": s, "loss": 3.0 / s, "grad_norm": 1.0} for s in (1, 2, 3)]
           + [{"step": 3, "loss": 1.0, "eval_loss": 1.4}])  # fmt: skip
    _jsonl(rd.ppm / "run" / "metrics.jsonl", [{"step": s, "loss": 0.7 / s, "accuracy": 0.5 + 0.1 * s} for s in (1, 2)])
    _jsonl(rd.trees / "trees.jsonl", [tree_record(f"toy/train/gsm/{i:06d}") for i in range(10)])
    _jsonl(rd.eval / "mcts_ppm.trees.jsonl", [tree_record(f"toy/test/gsm/{i:06d}", mode="test") for i in range(2)])
    trees = [rd.trees / "trees.jsonl", rd.eval / "mcts_ppm.trees.jsonl"]
    links = write_round_assets(rd, 2, trees=trees, margin=0.5, per_problem=2, sample=4)
    assert links == {
        "training curves (policy SFT, PPM)": "round_2_training.png",
        "search trees, trees.jsonl (4 of 10 problems)": "trees.html",
        "evaluation trees, mcts_ppm.trees.jsonl (2 of 2 problems)": "eval_mcts_ppm_trees.html",
    }
    png = image.imread(io.BytesIO((rd.report / "round_2_training.png").read_bytes()), format="png")
    assert png.shape[1] > png.shape[0] > 300 and np.unique(png.reshape(-1, png.shape[-1]), axis=0).shape[0] > 20
    page = (rd.report / "trees.html").read_text(encoding="utf-8")
    shown = [f"toy/train/gsm/{i:06d}" for i in (0, 2, 5, 7)]
    assert page.count('<section class="problem"') == 4 and all(f'data-id="{i}"' in page for i in shown)
    assert write_round_assets(rd, 2, trees=trees, margin=0.5, per_problem=2, sample=0) == {
        "training curves (policy SFT, PPM)": "round_2_training.png"
    }
    md = report.write_round_report(rd.report, {"round": 2, "links": links})["md"].read_text(encoding="utf-8")
    assert "## Files" in md and "- [search trees, trees.jsonl (4 of 10 problems)](trees.html)" in md
    with pytest.raises(ValueError, match="round 2: links must map labels to file names"):
        report.validate_metrics({"round": 2, "links": {"curves": 3}})
