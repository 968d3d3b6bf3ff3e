"""Two processes x 4 CPU devices on loopback (gloo) run the evolve loop like one process with 8 devices.

One module fixture runs rounds 1-2 of a shrunken configs/micro.py three ways: one process with 8 devices (the
reference), and two processes of 4 devices each through `jax.distributed` (`devices.initialize`) whose process 1
is killed with SIGKILL in the middle of its share of round 2's search, then both are rerun to the end. The tests
compare: the trees (as sets of records), the greedy evaluation (each process evaluates its share of the held-out
problems, process 0 merges) and every manifest's counts; the round-1 SFT losses and checkpoint steps
(training on one fsdp=8 mesh over both processes' devices, process-local batch rows, orbax's multi-host
checkpoints); the shards each process wrote. The preemption test trains in this process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from rstar_jax.models import Decoder
from rstar_jax.train import sft_examples, sft_loss, train
from tests.test_train import CONFIG, EOS, encode, sft_records, small_cfg

ROOT = Path(__file__).resolve().parents[1]
STAGES = [f"round_{r}/{s}" for r in (1, 2) for s in ("trees", "data", "sft", "ppm", "eval")]
SMALL = [  # configs/micro.py, rounds 1-2 on 6 + 3 problems, batches of 8 rows (the mesh has 8 devices)
    "--config=configs/micro.py",
    "--config.last_round=2",
    "--config.mesh.fsdp=-1",
    "--config.toy.train_per_band=2",
    "--config.toy.test_per_band=1",
    "--config.search.batch_problems=1",
    "--config.evolve.eval_problems=2",  # greedy only: one held-out problem per process
    "--config.evolve.full_eval_rounds=()",
    *(f"--config.{s}.batch_size=8" for s in ("pretrain", "sft", "ppm")),
    "--config.toy_model.read_per_band=0",  # no reading pretraining: the scratch base is its initialisation
    "--config.sft.steps=3",  # step 1 warms up at learning rate 0: the losses of steps 2-3 follow updates
    "--config.ppm.steps=2",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(workdir: Path, log: Path, devices: int, *extra: str) -> subprocess.Popen:
    kept = ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS")  # tests/conftest.py: cheap compilation
    env = {k: v for k, v in os.environ.items() if k in kept or not k.startswith(("JAX_", "XLA_"))}
    env |= {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices)}
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    cmd = [sys.executable, "-m", "launch.evolve", *SMALL, f"--config.workdir={workdir}", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _start_two(workdir: Path, tag: str) -> list[subprocess.Popen]:
    port = _free_port()
    dist = [f"--config.distributed.coordinator=localhost:{port}", "--config.distributed.num_processes=2"]
    return [
        _start(workdir, workdir.parent / f"{tag}-{i}.log", 4, *dist, f"--config.distributed.process_id={i}")
        for i in range(2)
    ]


def _wait(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0] * len(procs), "\n".join(log.read_text()[-3000:] for log in logs)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("multihost")
    one, two = base / "one", base / "two"
    start = time.perf_counter()
    reference = _start(one, base / "one.log", 8)
    first = _start_two(two, "first")
    shard = two / "round_2" / "trees" / "trees.shard-00001-of-00002.jsonl"
    while not _lines(shard) and first[1].poll() is None:
        time.sleep(0.02)
    first[1].send_signal(signal.SIGKILL)  # process 1, in the middle of its share of round 2's search
    first[1].wait()
    killed_at = len(_lines(shard))
    first[0].send_signal(signal.SIGKILL)  # waits at a barrier for process 1; `rerun both`
    first[0].wait()
    _wait([reference], [base / "one.log"])
    rerun = _start_two(two, "rerun")
    _wait(rerun, [base / f"rerun-{i}.log" for i in range(2)])
    print(f"multi-host runs: {time.perf_counter() - start:.0f} s")
    return {"one": one, "two": two, "killed_at": killed_at, "base": base}


def _manifest(workdir: Path, stage: str) -> dict:
    return json.loads((workdir / stage / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_killed_process_resumes_its_share_and_the_trees_equal_one_process(runs):
    one, two = runs["one"], runs["two"]
    assert 1 <= runs["killed_at"] < 3, "process 1 was not killed in the middle of its 3 problems"
    for r in (1, 2):
        a, b = (_lines(w / f"round_{r}" / "trees" / "trees.jsonl") for w in (one, two))
        assert len(a) == 6
        assert sorted(a) == sorted(b), f"round {r}: the trees differ from the one-process run's"
        shards = [_lines(two / f"round_{r}" / "trees" / f"trees.shard-0000{i}-of-00002.jsonl") for i in range(2)]
        ids = [[json.loads(x)["id"] for x in s] for s in shards]
        order = [json.loads(x)["id"] for x in a]
        assert ids == [order[0::2], order[1::2]]  # positions p, p + 2, ... of the training split
    for stage in ("problems", "base", *STAGES):
        assert _manifest(two, stage)["outputs"]["counts"] == _manifest(one, stage)["outputs"]["counts"], stage
    for r in (1, 2):  # each process evaluated its share; process 0 merged them into the one-process file
        greedy = [json.loads((w / f"round_{r}" / "eval" / "greedy.json").read_text()) for w in (one, two)]
        assert len(greedy[0]) == 2 and greedy[1] == greedy[0]
        part = two / f"round_{r}" / "eval" / "part.shard-00001-of-00002" / "greedy.json"
        assert [x["id"] for x in json.loads(part.read_text())] == [greedy[0][1]["id"]]
    assert _manifest(two, "round_2/trees")["attempts"] == 2
    assert not (two / "logs" / "evolve.process-00000.log").exists()
    assert (two / "logs" / "evolve.process-00001.log").exists()


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_eight_devices(runs):
    one, two = (runs[k] / "round_1" / "sft" / "run" for k in ("one", "two"))
    losses = [[json.loads(x)["loss"] for x in _lines(w / "metrics.jsonl")] for w in (two, one)]
    assert len(losses[0]) == len(losses[1]) == 3 and losses[1][2] != losses[1][0]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    steps = [sorted(p.name for p in (w / "checkpoints").iterdir() if p.name.isdigit()) for w in (two, one)]
    assert steps[0] == steps[1] and steps[0]


def test_shares_partition_the_problems_and_name_their_shards(monkeypatch, tmp_path):
    import jax

    from rstar_jax import processes

    items, n = list(range(7)), 3
    monkeypatch.setattr(jax, "process_count", lambda: n)
    shares = []
    for p in range(n):
        monkeypatch.setattr(jax, "process_index", lambda p=p: p)
        shares.append(processes.share(items))
        assert processes.shard_path(tmp_path / "trees.jsonl").name == f"trees.shard-0000{p}-of-00003.jsonl"
        assert processes.is_leader() == (p == 0)
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert [x.name for x in processes.shard_paths(tmp_path / "t.jsonl")] == [
        f"t.shard-0000{p}-of-00003.jsonl" for p in range(3)
    ]
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert (
        processes.share(items) == items
        and processes.shard_path(tmp_path / "t.jsonl").name == "t.shard-00000-of-00001.jsonl"
    )
    processes.barrier("one process: returns at once")


def test_preemption_saves_the_step_and_the_same_call_resumes_to_the_same_result(tmp_path, monkeypatch):
    from rstar_jax.checkpoint import Checkpointer
    from rstar_jax.train import Preempted

    def losses(workdir: Path) -> list[float]:
        return [json.loads(x)["loss"] for x in _lines(workdir / "metrics.jsonl")]

    ex = sft_examples(sft_records(16), encode, EOS, 112)
    cfg = small_cfg(steps=4, save_every=10)
    _, whole = train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=tmp_path / "whole")
    monkeypatch.setattr(Checkpointer, "reached_preemption", lambda self, step: step == 2)
    with pytest.raises(Preempted, match="step 2 saved"):
        train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=tmp_path / "cut")
    assert Checkpointer(tmp_path / "cut" / "checkpoints").latest_step() == 2
    monkeypatch.undo()
    _, resumed = train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=tmp_path / "cut")
    np.testing.assert_allclose(resumed["loss"], whole["loss"], rtol=1e-6)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
