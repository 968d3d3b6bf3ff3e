"""Training writes TensorBoard event files that TensorBoard's own reader reads back: loss, learning rate, gradient
norm, PPM pair accuracy, tokens/s and the eval metrics; a resumed log is cut back to the checkpoint's step."""

from __future__ import annotations

import json

import numpy as np
from flax import nnx
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rstar_jax.config import TrainConfig
from rstar_jax.models import PPM, ModelConfig
from rstar_jax.train import pair_examples, train
from rstar_jax.train.losses import bradley_terry_loss
from rstar_jax.train.metrics_log import EVENTS_FILE, MetricsLog, scalar_tag

CONFIG = ModelConfig(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=48, num_layers=1,
                     num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6, rope_theta=1e4,
                     max_position_embeddings=128, tie_word_embeddings=True, qkv_bias=True)  # fmt: skip


def _encode(text: str) -> list[int]:
    return [min(ord(ch), 127) for ch in text]


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_ppm_training_writes_event_files_tensorboard_reads(tmp_path):
    pairs = [{"prompt": f"{i}+{i}=", "pos": str(2 * i), "neg": str(2 * i + 1), "pos_count": 1, "neg_count": 1,
              "id": f"p{i}"} for i in range(12)]  # fmt: skip
    ex = pair_examples(pairs, _encode, 32)
    fit, held = ex.split(0.25, seed=0)
    cfg = TrainConfig(steps=4, batch_size=4, max_length=32, learning_rate=1e-2, warmup_steps=2, decay="linear",
                      compute_dtype="float32", log_every=1, eval_every=2, save_every=4)  # fmt: skip
    _, final = train(PPM(CONFIG, rngs=nnx.Rngs(0)), bradley_terry_loss, fit, cfg=cfg, workdir=tmp_path,
                     eval_examples=held, progress=False)  # fmt: skip
    assert [p.name for p in tmp_path.glob("*tfevents*")] == [EVENTS_FILE]
    scalars = _scalars(tmp_path)
    train_tags = {"loss", "grad_norm", "learning_rate", "accuracy", "tokens_per_s"}
    assert {f"train/{t}" for t in train_tags} | {"eval/loss", "eval/accuracy"} <= set(scalars)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["eval/accuracy"]] == [2, 4]  # every eval_every steps, the last one included
    # Warmup over 2 steps, then linear decay to 0 at step 4: the rate each step's update used.
    np.testing.assert_allclose([v for _, v in scalars["train/learning_rate"]], [0.0, 5e-3, 1e-2, 5e-3], atol=1e-8)
    assert all(v > 0 for _, v in scalars["train/tokens_per_s"])
    assert all(0.0 <= v <= 1.0 for _, v in scalars["train/accuracy"] + scalars["eval/accuracy"])
    # The event file and metrics.jsonl hold the same values; tokens/s (it varies run to run) only the event file.
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [1, 2, 3, 4]
    for record in logged:
        for key, value in record.items():
            if key != "step":
                assert dict(scalars[scalar_tag(key)])[record["step"]] == np.float32(value), key
    assert "tokens_per_s" not in logged[0] and "tokens_per_s" not in final
    assert final["eval_accuracy"] == logged[-1]["eval_accuracy"] and final["loss"] == logged[-1]["loss"]


def test_resumed_log_is_cut_back_to_the_checkpoint_step(tmp_path):
    with MetricsLog(tmp_path, 0):
        pass
    assert not (tmp_path / EVENTS_FILE).exists()  # nothing logged, no file: a failed first attempt leaves none
    with MetricsLog(tmp_path, 0) as log:
        for step in range(1, 7):
            log.write(step, {"loss": 1.0 / step, "eval_loss": 2.0}, throughput={"tokens_per_s": 100.0})
    with open(tmp_path / EVENTS_FILE, "ab") as f:
        f.write(b"\x17\x00\x00")  # a record torn by a kill
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')
    with MetricsLog(tmp_path, 4) as log:  # resumed from the step-4 checkpoint: steps 5 and 6 are trained again
        for step in (5, 6):
            log.write(step, {"loss": 0.5 / step, "eval_loss": 3.0})
    scalars = _scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [1, 1 / 2, 1 / 3, 1 / 4, 0.1, 0.5 / 6], rtol=1e-6)
    assert [s for s, _ in scalars["eval/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars["train/tokens_per_s"]] == [1, 2, 3, 4]
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [1, 2, 3, 4, 5, 6] and logged[-1]["eval_loss"] == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [EVENTS_FILE, "metrics.jsonl"]
