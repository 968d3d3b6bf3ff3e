"""Kill -9 during training, rerun: the final parameters equal those of an uninterrupted run (CPU, fp32).

The child process trains a tiny decoder; in the interrupted run it SIGKILLs itself right after logging step 5
(checkpoints every 2 steps, so step 5 was computed but not saved and the rerun must redo it from step 4 at the
same data position).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

CHILD = textwrap.dedent(
    """
    import os, sys, signal
    import jax
    jax.config.update("jax_platforms", "cpu")
    import numpy as np
    from flax import nnx
    from rstar_jax.config import TrainConfig
    from rstar_jax.models import Decoder, ModelConfig
    from rstar_jax.train import metrics_log, sft_examples, sft_loss, train

    workdir, kill_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    write = metrics_log.MetricsLog.write
    def write_then_die(self, step, metrics, throughput=None):
        write(self, step, metrics, throughput)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    metrics_log.MetricsLog.write = write_then_die
    config = ModelConfig(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=48, num_layers=1,
        num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6, rope_theta=1e4, max_position_embeddings=128,
        tie_word_embeddings=True, qkv_bias=True)
    records = [{"query": f"{i}*3", "response": f"<answer>{3 * i}", "id": f"p{i}"} for i in range(10)]
    ex = sft_examples(records, lambda s: [min(ord(c), 127) for c in s], 2, 112)
    cfg = TrainConfig(steps=8, batch_size=4, accum_steps=2, max_length=112, learning_rate=1e-2, warmup_steps=2,
        compute_dtype="float32", save_every=2, log_every=1)
    model, _ = train(Decoder(config, rngs=nnx.Rngs(3)), sft_loss, ex, cfg=cfg, workdir=workdir)
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]
    np.savez(out, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})
    """
)


def _run(workdir: Path, kill_at: int, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(workdir), str(kill_at), str(out)], env=env, capture_output=True, text=True
    )


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    straight = _run(tmp_path / "straight", 0, tmp_path / "straight.npz")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _run(tmp_path / "resumed", 5, tmp_path / "unused.npz")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "unused.npz").exists()
    resumed = _run(tmp_path / "resumed", 0, tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Died after logging 5, resumed from the step-4 checkpoint: both logs were cut back to step 4 first, so
    # every step is logged once, and the resumed steps' values equal the uninterrupted run's.
    logged = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [1, 2, 3, 4, 5, 6, 7, 8]
    events = EventAccumulator(str(tmp_path / "resumed"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e.step for e in events.Scalars("train/tokens_per_s")] == [1, 2, 3, 4, 5, 6, 7, 8]
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([x["loss"] for x in logged], [x["loss"] for x in straight_log], rtol=1e-6)
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(a) == sorted(b) and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    fresh = np.load(tmp_path / "straight.npz")
    assert any(not np.array_equal(fresh[k], 0 * fresh[k]) for k in fresh)
