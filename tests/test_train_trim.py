"""Length bucketing in the training loop: batches are cut to their longest real sequence (rounded up to a bucket)
and the losses, metrics and trained parameters equal those computed on the full max_length padding."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from test_train import CONFIG as TRAIN_CONFIG
from test_train import encode

from rstar_jax.config import TrainConfig
from rstar_jax.models import PPM, Decoder
from rstar_jax.train import bradley_terry_loss, pair_examples, pqm_loss, sft_examples, sft_loss, train, value_examples
from rstar_jax.train.batches import Examples, trim_padding

CONFIG = dataclasses.replace(TRAIN_CONFIG, max_position_embeddings=256)  # the tiny model of test_train.py
T = 160


def sft_set(n: int = 12):
    records = [{"query": f"{i}+{i}", "response": f"<answer>{2 * i}" + "x" * (4 * i), "id": f"p{i}"} for i in range(n)]
    return sft_examples(records, encode, 2, T)


def test_trim_rounds_up_to_bucket_and_keeps_full_length_batches():
    mask = np.zeros((2, 3, T), bool)
    mask[0, 1, :70] = mask[1, 2, :5] = True
    arrays = {"tokens": np.ones((2, 3, T), np.int32), "mask": mask, "loss_mask": mask.copy(), "weight": np.ones((2, 3))}
    short = trim_padding(arrays, 32)
    assert short["tokens"].shape == short["mask"].shape == short["loss_mask"].shape == (2, 3, 96)
    assert short["weight"].shape == (2, 3) and short["mask"].sum() == mask.sum()
    assert trim_padding(arrays, 64)["mask"].shape[2] == 128
    assert trim_padding(arrays, 200)["mask"].shape[2] == T  # never above T
    long = dict(arrays, mask=mask.copy())
    long["mask"][0, 0, :130] = True
    assert trim_padding(long, 64)["mask"].shape[2] == T  # 192 capped at T
    mask[1, 0, :] = True  # one sequence fills max_length: nothing is cut
    assert all(v is arrays[k] for k, v in trim_padding(arrays, 32).items())
    # PPM pairs: the longest over every *mask array counts; an empty batch keeps one bucket.
    pos, neg = np.zeros((1, 2, T), bool), np.zeros((1, 2, T), bool)
    pos[0, 0, :10], neg[0, 1, :40] = True, True
    pairs = trim_padding({"pos_mask": pos, "neg_mask": neg, "pos_tokens": pos.astype(np.int32)}, 16)
    assert {v.shape for v in pairs.values()} == {(1, 2, 48)}
    assert trim_padding({"mask": np.zeros((1, 2, T), bool)}, 16)["mask"].shape == (1, 2, 16)


def test_length_grouping_is_a_seeded_permutation_with_less_padding():
    rng = np.random.default_rng(0)
    n, B, window = 203, 4, 8
    lengths = rng.integers(1, T, n)
    mask = np.arange(T)[None] < lengths[:, None]
    ex = Examples({"tokens": np.zeros((n, T), np.int32), "mask": mask}, tuple(f"p{i}" for i in range(n)))
    np.testing.assert_array_equal(ex.lengths, lengths)
    plain = np.random.default_rng([5, 1]).permutation(n)
    np.testing.assert_array_equal(ex.epoch_order(1, B, 5), plain)  # window 1: the plain permutation
    for epoch in (0, 1):
        order = ex.epoch_order(epoch, B, 5, window)
        assert sorted(order.tolist()) == list(range(n))  # every example once per epoch
        # each window of B x window examples of the plain permutation is regrouped, never mixed across windows
        span = B * window
        for w in range(0, n, span):
            assert set(order[w : w + span]) == set(np.random.default_rng([5, epoch]).permutation(n)[w : w + span])
        np.testing.assert_array_equal(order, Examples(ex.arrays, ex.ids).epoch_order(epoch, B, 5, window))
    assert not np.array_equal(ex.epoch_order(0, B, 5, window), ex.epoch_order(1, B, 5, window))

    def padded(window: int) -> int:  # tokens of the batches' [B, longest] rectangles over two epochs
        batches = [ex.micro_batches(k, 1, B, 5, window)[0]["mask"] for k in range(2 * n // B)]
        return sum(B * int(m.sum(-1).max()) for m in batches)

    assert padded(window) < 0.8 * padded(1)
    batch, ids = ex.micro_batches(3, 2, B, 5, window)
    np.testing.assert_array_equal(batch["mask"].reshape(2 * B, T).sum(-1), lengths[[int(i[1:]) for i in ids]])


def test_losses_unchanged_by_trimming():
    policy, ppm = Decoder(CONFIG, rngs=nnx.Rngs(0)), PPM(CONFIG, rngs=nnx.Rngs(1))
    pairs = [
        {"prompt": "P", "pos": "good", "neg": "bad" * 9, "pos_count": 2, "neg_count": 1, "id": "a"},
        {"prompt": "Q" * 20, "pos": "fine", "neg": "no", "pos_count": 1, "neg_count": 3, "id": "b"},
    ]
    values = [{"text": "abc" * 7, "q": 0.5, "id": "a"}, {"text": "xy", "q": -1.0, "id": "b"}]
    cases = [
        (policy, sft_loss, sft_set(4)),
        (ppm, bradley_terry_loss, pair_examples(pairs, encode, T)),
        (ppm, pqm_loss, value_examples(values, encode, T)),
    ]
    for model, loss_fn, ex in cases:
        full, _ = ex.micro_batches(0, 1, len(ex), seed=0)
        cut = trim_padding(full, 16)
        assert cut[next(k for k in cut if k.endswith("mask"))].shape[2] < T
        (a, aux_a), (b, aux_b) = (loss_fn(model, {k: jnp.asarray(v[0]) for k, v in x.items()}) for x in (full, cut))
        np.testing.assert_allclose(float(b), float(a), rtol=1e-5, atol=1e-6)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(float(y), float(x), rtol=1e-5), aux_a, aux_b)


def test_trained_steps_equal_full_length_training(tmp_path):
    ex = sft_set(12)
    fit, held = ex.split(0.25, seed=0)
    cfg = TrainConfig(
        steps=4,
        batch_size=2,
        accum_steps=1,
        max_length=T,
        learning_rate=1e-2,
        compute_dtype="float32",
        log_every=1,
        length_window=2,
    )
    # The steps run at several lengths (bucket 16), all below T = 160.
    batches = [fit.micro_batches(k, 1, 2, cfg.seed, cfg.length_window)[0] for k in range(4)]
    lengths = [trim_padding(b, 16)["tokens"].shape[2] for b in batches]
    assert len(set(lengths)) > 1 and max(lengths) < T
    # The reference: the first step's loss is the full-T loss of its micro-batch at the initial params.
    first, _ = fit.micro_batches(0, 1, 2, cfg.seed, cfg.length_window)
    expected = float(sft_loss(Decoder(CONFIG, rngs=nnx.Rngs(0)), {k: jnp.asarray(v[0]) for k, v in first.items()})[0])
    runs = {}
    for bucket in (16, T):  # bucket T never trims: the untrimmed path
        model, final = train(
            Decoder(CONFIG, rngs=nnx.Rngs(0)),
            sft_loss,
            fit,
            cfg=cfg,
            workdir=tmp_path / str(bucket),
            eval_examples=held,
            length_bucket=bucket,
        )
        lines = [json.loads(x) for x in (tmp_path / str(bucket) / "metrics.jsonl").read_text().splitlines()]
        runs[bucket] = (lines, final, nnx.to_pure_dict(nnx.state(model)))
    np.testing.assert_allclose(runs[16][0][0]["loss"], expected, rtol=1e-5)
    for a, b in zip(runs[16][0], runs[T][0], strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[16][1]["eval_loss"], runs[T][1]["eval_loss"], rtol=1e-5)
    # The parameters agree up to summation-order rounding, which Adam's normalisation can amplify in an element whose
    # gradient is near zero (measured: one of 11,936 elements 1.9e-5 apart, the mean 1.9e-8, on one machine's XLA):
    # every element within 1% of one step (lr), and the mean difference far below what any training difference
    # would make (an Adam step moves every parameter by about lr = 1e-2).
    trimmed, full = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(runs[b][2])]) for b in (16, T))
    np.testing.assert_allclose(trimmed, full, atol=1e-2 * cfg.learning_rate)
    assert np.abs(trimmed - full).mean() < 1e-6
