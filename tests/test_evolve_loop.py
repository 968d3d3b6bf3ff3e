"""The whole self-evolution loop on configs/micro.py, as subprocesses: an uninterrupted run, and a run killed with
SIGKILL at a random moment of every stage and rerun with the same command each time.

Checks: both complete; the killed run's manifests record the same counts and the same output files (checksums) as
the uninterrupted one; a manifest, once written, is never rewritten by a later rerun (no finished stage is redone);
the reports exist; a changed config for a finished stage is refused naming the key.
"""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROUNDS = 2
STAGES = ["base"] + [f"round_{r}/{s}" for r in range(1, ROUNDS + 1) for s in ("trees", "data", "sft", "ppm", "eval")]


def _cmd(workdir, *extra):
    return [
        sys.executable,
        "-m",
        "launch.evolve",
        "--config=configs/micro.py",
        f"--config.workdir={workdir}",
        f"--config.last_round={ROUNDS}",
        *extra,
    ]


def _start(workdir, log):
    return subprocess.Popen(_cmd(workdir), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _manifests(workdir):
    out = {}
    for stage in STAGES:
        path = workdir / stage / "manifest.json"
        if path.exists():
            out[stage] = (path.stat().st_mtime_ns, json.loads(path.read_text()))
    return out


def _kill_during(workdir, stage, rng, log):
    """Starts the run, waits until `stage` has started (or the run ended), kills it after a random delay."""
    proc = _start(workdir, log)
    started = workdir / stage / "started.json"
    deadline = time.monotonic() + 240
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 2.0))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill9_every_stage_then_resume_matches_uninterrupted_run(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    with open(tmp_path / "ref.log", "w") as ref_log:
        ref = _start(ref_dir, ref_log)
        rng = random.Random(0)
        seen: dict[str, int] = {}
        with open(tmp_path / "killed.log", "w") as log:
            for stage in STAGES:
                _kill_during(run_dir, stage, rng, log)
                for name, (mtime, _) in _manifests(run_dir).items():
                    assert seen.setdefault(name, mtime) == mtime, f"finished stage {name} was redone"
            final = subprocess.run(_cmd(run_dir), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=600)
        assert final.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
        assert ref.wait(timeout=600) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    ref_m, run_m = _manifests(ref_dir), _manifests(run_dir)
    assert set(ref_m) == set(run_m) == set(STAGES)
    for stage in STAGES:
        assert seen.get(stage, run_m[stage][0]) == run_m[stage][0], f"finished stage {stage} was redone"
        ref_out, run_out = ref_m[stage][1]["outputs"], run_m[stage][1]["outputs"]
        assert run_out["counts"] == ref_out["counts"], stage
        assert run_out["files"] == ref_out["files"], f"{stage}: outputs differ from the uninterrupted run"
    for wd in (ref_dir, run_dir):
        assert (wd / "report" / "report.md").exists() and (wd / "report" / "report_system.png").exists()
        assert (wd / f"round_{ROUNDS}" / "report" / f"round_{ROUNDS}.json").exists()
    # sft_replay (on in micro): round 2's SFT data holds every problem of round 1's, solved again or replayed
    sft = [json.loads((ref_dir / f"round_{r}" / "data" / "sft.json").read_text()) for r in (1, 2)]
    replayed = json.loads((ref_dir / "round_2" / "data" / "stats.json").read_text())["replayed"]
    new_part, old_part = sft[1][: len(sft[1]) - replayed], sft[1][len(sft[1]) - replayed :]
    assert all(x in sft[0] for x in old_part)
    assert not {x["id"] for x in old_part} & {x["id"] for x in new_part}
    assert {x["id"] for x in sft[0]} <= {x["id"] for x in sft[1]}
    assert (run_dir / "round_1" / "trees" / "trees.jsonl").read_bytes() == (
        ref_dir / "round_1" / "trees" / "trees.jsonl"
    ).read_bytes()

    changed = subprocess.run(
        _cmd(ref_dir, "--config.sft.learning_rate=0.01"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert changed.returncode != 0
    assert "train.learning_rate: 0.003 -> 0.01" in changed.stderr and "evolve.force" in changed.stderr
