"""Two processes x 4 CPU devices on loopback (gloo) train like one process with 8 devices: jax.distributed
through `rstar_jax.devices.initialize`, process-local batch rows, orbax's multi-host checkpoints, one metrics log."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from rstar_jax.config import MeshSetup
from rstar_jax.devices import run_mesh
from rstar_jax.models import Decoder
from rstar_jax.train import sft_examples, sft_loss, train
from tests.test_train import CONFIG, EOS, encode, sft_records, small_cfg

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _losses(workdir: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_eight_devices(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = str(ROOT)
    worker = str(ROOT / "tests" / "multihost_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(port), str(i), str(tmp_path / "two")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    ex = sft_examples(sft_records(16), encode, EOS, 112)
    cfg = small_cfg(steps=2, batch_size=8, accum_steps=2, save_every=2)
    mesh = run_mesh(MeshSetup(fsdp=-1))
    train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=tmp_path / "one", mesh=mesh)
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert len(two) == len(one) == 2
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit()) == sorted(
        p.name for p in (tmp_path / "one" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert jax.device_count() == 8


def test_preemption_saves_the_step_and_the_same_call_resumes_to_the_same_result(tmp_path, monkeypatch):
    from rstar_jax.checkpoint import Checkpointer
    from rstar_jax.train import Preempted

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
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")
