"""The whole self-evolution loop on configs/micro.py (all four rounds), as subprocesses: an uninterrupted run, and a
run killed with SIGKILL at random moments (in every kind of stage that takes time, in every round, and during each of
round 4's later searches of the unsolved problems) and rerun with the same command each time.

Checks: both complete; the killed run's manifests record the same counts and the same output files (checksums) as
the uninterrupted one; a manifest, once written, is never rewritten by a later rerun (no finished stage is redone);
the reports exist; a changed config for a finished stage is refused naming the key. On the uninterrupted run
(shared by the tests of this module, started once and run alongside the killed one): rounds 3-4 search with the
previous round's PPM and rounds 1-2 without; round 4 searches exactly its unsolved training problems again, with new
seeds, and those still unsolved once more (`evolve.unsolved_more_rollouts`); `evolve.sft_replay` keeps every earlier
problem in each round's SFT data.
"""

import json
import os
import pathlib
import random
import runpy
import signal
import subprocess
import sys
import time

import pytest

from rstar_jax.evolve.stages import digest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MICRO = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
ROUNDS = MICRO.last_round  # 4: PPM-augmented trees from round 3, round 4 searches its unsolved problems again
STAGES = ["base"] + [f"round_{r}/{s}" for r in range(1, ROUNDS + 1) for s in ("trees", "data", "sft", "ppm", "eval")]
# where to kill: a random moment (up to 2 s) after a stage has started, and a moment (up to 0.5 s: it is short)
# after round 4's second search, of the problems its first search left unsolved, has begun (its log line), and after
# its third search has begun. Every restart costs a process start (about 10 s), so each kind of stage that runs for
# more than a moment is killed once or twice, and every round at least once: the base, round 1 SFT, round 2 PPM,
# round 3 trees (the PPM-augmented search) and eval, round 4's second and third searches. (Extraction takes a few
# milliseconds, so a kill "in" it lands in the next stage; round 1's trees are the scripted teacher's.)
SECOND_SEARCH = "unsolved problems searched again"
THIRD_SEARCH = "problems still unsolved, searched once more"  # evolve.unsolved_more_rollouts (micro: one entry)
KILLED = ["base", "round_1/sft", "round_2/ppm", "round_3/trees", "round_3/eval"]
KILL_POINTS = [(f"{s}/started.json", 2.0) for s in KILLED] + [
    (f"log:{SECOND_SEARCH}", 0.5),
    (f"log:{THIRD_SEARCH}", 0.5),
]
ROUND4_FILES = {"trees.jsonl", "trees_unsolved.jsonl", "trees_unsolved_2.jsonl"}


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


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _solved(record):
    """A correct answer leaf in a data-generation tree (as round_trees.solved)."""
    return any(n["terminal_kind"] == "answer" and n["value"] > 0 for n in record["rstar"].values())


def _log_count(workdir, text):
    path = workdir / "logs" / "evolve.log"
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def _kill_after(workdir, trigger, max_delay, rng, log):
    """Starts the run, waits until `trigger` (a file, or `log:<text>`: a new log line with text) appears or the run
    ends, kills it after a random delay."""
    if trigger.startswith("log:"):
        text = trigger.removeprefix("log:")
        before = _log_count(workdir, text)

        def ready():
            return _log_count(workdir, text) > before
    else:
        ready = (workdir / trigger).exists
    proc = _start(workdir, log)
    deadline = time.monotonic() + 240
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, max_delay))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, started at once; calling the fixture's value waits for it and returns its workdir."""
    root = tmp_path_factory.mktemp("evolve_ref")
    workdir, log_path = root / "ref", root / "ref.log"
    with open(log_path, "w") as log:
        proc = _start(workdir, log)
        rc = []

        def finished():
            if not rc:
                rc.append(proc.wait(timeout=900))
            assert rc[0] == 0, log_path.read_text()[-3000:]
            return workdir

        try:
            yield finished
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow
def test_kill9_in_every_round_and_kind_of_stage_then_resume_matches_uninterrupted_run(tmp_path, reference):
    run_dir = tmp_path / "killed"
    rng = random.Random(0)
    seen: dict[str, int] = {}
    with open(tmp_path / "killed.log", "w") as log:
        for trigger, max_delay in KILL_POINTS:
            _kill_after(run_dir, trigger, max_delay, rng, log)
            for name, (mtime, _) in _manifests(run_dir).items():
                assert seen.setdefault(name, mtime) == mtime, f"finished stage {name} was redone"
        final = subprocess.run(_cmd(run_dir), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    assert final.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
    ref_dir = reference()
    ref_m, run_m = _manifests(ref_dir), _manifests(run_dir)
    assert set(ref_m) == set(run_m) == set(STAGES)
    for stage in STAGES:
        assert seen.get(stage, run_m[stage][0]) == run_m[stage][0], f"finished stage {stage} was redone"
        ref_out, run_out = ref_m[stage][1]["outputs"], run_m[stage][1]["outputs"]
        assert run_out["counts"] == ref_out["counts"], stage
        assert run_out["files"] == ref_out["files"], f"{stage}: outputs differ from the uninterrupted run"
    assert set(run_m[f"round_{ROUNDS}/trees"][1]["outputs"]["files"]) == ROUND4_FILES
    for wd in (ref_dir, run_dir):
        assert (wd / "report" / "report.md").exists() and (wd / "report" / "report_system.png").exists()
        for r in range(1, ROUNDS + 1):
            assert (wd / f"round_{r}" / "report" / f"round_{r}.json").exists(), (wd, r)


def test_ppm_augmented_trees_from_round_3(reference):
    ref_dir = reference()
    ppm_from = MICRO.evolve.ppm_from_round
    assert ppm_from < ROUNDS == 4 and MICRO.evolve.unsolved_rollouts > 0
    scored = 0  # non-terminal children of PPM-augmented trees (each must carry its PPM score as prior)
    for r in range(1, ROUNDS + 1):
        trees_dir = ref_dir / f"round_{r}" / "trees"
        manifest = json.loads((trees_dir / "manifest.json").read_text())
        inputs, files = manifest["inputs"], sorted(manifest["outputs"]["files"])  # round 4: ROUND4_FILES
        records = [x for name in files for x in _records(trees_dir / name)]
        nodes = [n for x in records for n in x["rstar"].values()]
        # a new non-terminal child's prior is its PPM score (q0) in PPM-augmented mode, every prior 0 in terminal mode
        if r < ppm_from:
            assert inputs["mode"] == "terminal" and "ppm" not in inputs, r
            assert {x["mode"] for x in records} == {"terminal"}, r
            assert not any(n["prior"] for n in nodes), r
        else:
            previous_ppm = json.loads((ref_dir / f"round_{r - 1}" / "ppm" / "manifest.json").read_text())["outputs"]
            assert inputs["mode"] == "ppm_augmented" and inputs["ppm"] == digest(previous_ppm), r
            assert {x["mode"] for x in records} == {"ppm_augmented"}, r
            # created non-terminal: still "none", or "exhausted" once selection pruned it (all its children terminal)
            children = [n for n in nodes if n["depth"] > 0 and n["terminal_kind"] in ("none", "exhausted")]
            assert all(n["prior"] != 0 for n in children), f"round {r}: a non-terminal child without its PPM score"
            scored += len(children)
    # the random micro policy may write only dead ends (code errors, answers) in a round, so the check that the PPM
    # reached the trees counts the children of rounds 3-4 together: none at all would leave nothing checked
    assert scored, "no non-terminal child in rounds 3-4: the PPM scores were never used"


def test_round4_searches_exactly_the_unsolved_problems_again_with_new_seeds(reference):
    ref_dir = reference()
    trees_dir = ref_dir / f"round_{ROUNDS}" / "trees"
    train = [x["id"] for x in _records(ref_dir / "problems" / "train.jsonl")]
    first, again = _records(trees_dir / "trees.jsonl"), _records(trees_dir / "trees_unsolved.jsonl")
    assert [x["id"] for x in first] == train
    solved = {x["id"] for x in first if _solved(x)}
    unsolved = [i for i in train if i not in solved]
    assert unsolved, "micro's round-4 policy solved every training problem: the second search is not exercised"
    assert [x["id"] for x in again] == unsolved
    first_seed = {x["id"]: x["seed"] for x in first}
    assert all(x["seed"] != first_seed[x["id"]] for x in again)
    inputs = json.loads((trees_dir / "manifest.json").read_text())["inputs"]
    assert {x["rollouts"] for x in again} == {inputs["unsolved_rollouts"]} and inputs["unsolved_rollouts"] > 0
    # the third search: exactly the problems neither earlier search solved, with seeds of its own
    third = _records(trees_dir / "trees_unsolved_2.jsonl")
    still = [i for i in unsolved if i not in {x["id"] for x in again if _solved(x)}]
    assert still and [x["id"] for x in third] == still
    again_seed = {x["id"]: x["seed"] for x in again}
    assert all(x["seed"] not in (first_seed[x["id"]], again_seed[x["id"]]) for x in third)
    assert (
        {x["rollouts"] for x in third}
        == set(inputs["unsolved_more_rollouts"])
        == {MICRO.evolve.unsolved_more_rollouts[0]}
    )
    outputs = json.loads((trees_dir / "manifest.json").read_text())["outputs"]
    solved_in_round = solved | {x["id"] for x in again + third if _solved(x)}
    assert set(outputs["files"]) == ROUND4_FILES
    assert outputs["counts"] == {"trees": len(first) + len(again) + len(third), "solved": len(solved_in_round)}
    for r in range(1, ROUNDS):
        files = json.loads((ref_dir / f"round_{r}" / "trees" / "manifest.json").read_text())["outputs"]["files"]
        assert set(files) == {"trees.jsonl"}, r


def test_sft_replay_keeps_every_earlier_problem(reference):
    """sft_replay (on in micro): round r's SFT data holds every problem of round r-1's, solved again or replayed."""
    ref_dir = reference()
    sft = {r: json.loads((ref_dir / f"round_{r}" / "data" / "sft.json").read_text()) for r in range(1, ROUNDS + 1)}
    for r in range(2, ROUNDS + 1):
        replayed = json.loads((ref_dir / f"round_{r}" / "data" / "stats.json").read_text())["replayed"]
        new_part, old_part = sft[r][: len(sft[r]) - replayed], sft[r][len(sft[r]) - replayed :]
        assert all(x in sft[r - 1] for x in old_part), r
        assert not {x["id"] for x in old_part} & {x["id"] for x in new_part}, r
        assert {x["id"] for x in sft[r - 1]} <= {x["id"] for x in sft[r]}, r


def test_changed_config_is_refused_naming_the_key(reference):
    ref_dir = reference()
    changed = subprocess.run(
        _cmd(ref_dir, "--config.sft.learning_rate=0.01"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert changed.returncode != 0
    assert "train.learning_rate: 0.003 -> 0.01" in changed.stderr and "evolve.force" in changed.stderr
