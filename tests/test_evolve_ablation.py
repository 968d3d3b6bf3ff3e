"""Paper Table 8 on configs/micro.py's round 1 (`launch.ablate`'s library, `evolve.run.ablate`): the extract stage
writes the ORM and PQM data, the ablation trains both from the round's policy with the `ppm` settings, runs the
round's MCTS guided by each reward model on the held-out problems, and writes Table 8 with paired intervals; a
rerun redoes nothing; an unfinished round is refused naming the missing manifest.
"""

import json
import pathlib
import runpy

import pytest

from rstar_jax.config import ConfigError
from rstar_jax.config_validation import validate
from rstar_jax.evolve.run import ablate, evolve
from rstar_jax.evolve.stages import digest, train_inputs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _micro(tmp_path):
    cfg = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
    cfg.workdir, cfg.last_round = str(tmp_path / "wd"), 1
    return validate(cfg)


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_reward_ablation_on_micro_round_1(tmp_path):
    cfg = _micro(tmp_path)
    evolve(cfg)
    rd = tmp_path / "wd" / "round_1"
    extracted = _json(rd / "data" / "manifest.json")["outputs"]
    orm, pqm = _json(rd / "data" / "orm.json"), _json(rd / "data" / "pqm.json")
    assert extracted["counts"]["orm"] == len(orm) > 0 and extracted["counts"]["pqm"] == len(pqm) > 0
    assert {"orm.json", "pqm.json"} <= set(extracted["files"])
    assert all(set(p) >= {"prompt", "pos", "neg"} and p["pos"] != p["neg"] for p in orm)
    assert all(-1.0 <= v["q"] <= 1.0 for v in pqm)

    out = ablate(cfg, 1)
    sft = _json(rd / "sft" / "manifest.json")["outputs"]
    for kind, n in (("orm", len(orm)), ("pqm", len(pqm))):
        manifest = _json(rd / kind / "manifest.json")
        assert manifest["inputs"]["kind"] == kind and manifest["inputs"]["train"] == train_inputs(cfg.ppm)
        assert manifest["inputs"]["init"] == digest(sft) and (rd / kind / "model" / "config.json").is_file()
        assert 0 < manifest["outputs"]["counts"]["examples"] <= n

    test_ids = [
        json.loads(line)["id"] for line in (tmp_path / "wd" / "problems" / "test.jsonl").read_text().splitlines()
    ]
    table = _json(rd / "ablation" / "table8.json")
    for method in ("mcts_ppm", "mcts_pqm", "mcts_orm"):
        rows = _json(rd / "ablation" / f"{method}.json")
        assert [r["id"] for r in rows] == test_ids
        assert table["counts"][method]["all"] == {"correct": sum(r["correct"] for r in rows), "total": len(rows)}
    # the PPM arm is the round's own evaluation search again: same policy, PPM, seeds and rollouts
    assert _json(rd / "ablation" / "mcts_ppm.json") == _json(rd / "eval" / "mcts_ppm.json")
    assert [e["claim"] for e in table["effects"]] == ["PPM beats PQM", "PPM beats ORM"]
    assert all(e["n"] == len(test_ids) and e["interval"][0] <= e["difference"] <= e["interval"][1]
               for e in table["effects"])  # fmt: skip
    markdown = (rd / "ablation" / "table8.md").read_text()
    assert all(f"| {k} |" in markdown for k in ("PPM", "PQM", "ORM")) and "95% interval" in markdown
    assert out["counts"] == {"problems": len(test_ids)}

    stamps = {p: p.stat().st_mtime_ns for p in rd.glob("*/manifest.json")}
    assert ablate(cfg, 1)["metrics"] == out["metrics"]
    assert {p: p.stat().st_mtime_ns for p in rd.glob("*/manifest.json")} == stamps, "a finished stage was redone"

    with pytest.raises(ConfigError, match=r"--round=2: .*round_2/data/manifest.json is missing"):
        ablate(cfg, 2)
