"""The run pipeline on a micro config: workdir layout, resume, refusal of changed inputs, the demo command."""

import json
import pathlib
import subprocess
import sys

import pytest

from rstar_jax.config import RunConfig, ToyConfig
from rstar_jax.config_validation import validate
from rstar_jax.data import load_problems
from rstar_jax.evolve import verify
from rstar_jax.evolve.run import evolve
from rstar_jax.evolve.stages import StageRefused
from rstar_jax.workdir import ROUND_SUBDIRS, file_sha256

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _micro(tmp_path, **toy) -> RunConfig:
    cfg = RunConfig(workdir=str(tmp_path / "wd"), first_round=1, last_round=2, progress_bars=False, run_rounds=False)
    cfg.toy = ToyConfig(seed=3, train_per_band=toy.get("train", 4), test_per_band=toy.get("test", 2))
    cfg.execution.workers = 1
    return validate(cfg)


def test_run_writes_layout_problems_and_verifies(tmp_path):
    summary = evolve(_micro(tmp_path))
    wd = tmp_path / "wd"
    for r in (1, 2):
        assert all((wd / f"round_{r}" / sub).is_dir() for sub in ROUND_SUBDIRS)
    assert summary["problems"] == {"train": 12, "test": 6}
    assert summary["verify"]["verified"] == 18
    train = load_problems(wd / "problems" / "train.jsonl")
    test = load_problems(wd / "problems" / "test.jsonl")
    assert len(train) == 12 and len(test) == 6
    assert not {p.question for p in train} & {p.question for p in test}
    manifest = json.loads((wd / "problems" / "manifest.json").read_text())
    assert manifest["stage"] == "problems" and manifest["outputs"]["counts"] == {"train": 12, "test": 6}
    assert manifest["outputs"]["files"]["train.jsonl"]["sha256"] == file_sha256(wd / "problems" / "train.jsonl")
    assert json.loads((wd / "report.json").read_text()) == summary
    assert "verify" in (wd / "logs" / "evolve.log").read_text()


def test_rerun_reuses_and_changed_inputs_are_refused(tmp_path):
    evolve(_micro(tmp_path))
    train_file = tmp_path / "wd" / "problems" / "train.jsonl"
    mtime = train_file.stat().st_mtime_ns
    evolve(_micro(tmp_path))
    assert train_file.stat().st_mtime_ns == mtime, "finished stage was redone"
    with pytest.raises(StageRefused, match=r"toy.train_per_band: 4 -> 5"):
        evolve(_micro(tmp_path, train=5))


def test_damaged_output_is_regenerated(tmp_path):
    evolve(_micro(tmp_path))
    train_file = tmp_path / "wd" / "problems" / "train.jsonl"
    good = train_file.read_bytes()
    train_file.write_bytes(good[: len(good) // 2])
    evolve(_micro(tmp_path))
    assert train_file.read_bytes() == good


def test_train_file_source(tmp_path):
    src = tmp_path / "mine.jsonl"
    src.write_text('{"question": "What is 2+3?", "answer": "5"}\n{"question": "What is 2*3?", "answer": "6"}\n')
    cfg = _micro(tmp_path)
    cfg.data.train_file = str(src)
    summary = evolve(cfg)
    assert summary["problems"] == {"train": 2, "test": 0}
    assert "verify" not in summary


def test_demo_command_end_to_end(tmp_path):
    """The README's demo entry point on a shrunken tiny config, data stages only (tests/test_evolve_loop.py runs
    the rounds), as a subprocess."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.evolve",
            "--config=configs/tiny.py",
            f"--config.workdir={tmp_path / 'wd'}",
            "--config.toy.train_per_band=3",
            "--config.toy.test_per_band=2",
            "--noconfig.progress_bars",
            "--noconfig.run_rounds",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "wd" / "report.json").read_text())
    assert report["verify"] == {**report["verify"], "problems": 15, "verified": 15}


def test_verify_fails_loudly_on_a_wrong_gold_answer(tmp_path):
    import dataclasses

    from rstar_jax.toy import ToySpec, generate_toy_splits

    cfg = _micro(tmp_path)
    problems = generate_toy_splits(ToySpec(train_per_band=2, test_per_band=1, seed=5))["train"]
    wrong = dataclasses.replace(problems[0], answer=str(int(problems[0].answer) + 1))
    assert verify.verify_toy_solutions(cfg, problems)["verified"] == len(problems)
    with pytest.raises(verify.VerificationError, match=wrong.id):
        verify.verify_toy_solutions(cfg, [wrong, *problems[1:]])
