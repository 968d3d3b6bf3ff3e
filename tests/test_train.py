"""The shared training loop and its losses: response-only SFT loss, weighted Bradley–Terry, PQM MSE, the
optimizer schedule, non-finite detection, and the same step on 8 fake devices as on one."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rstar_jax.config import TrainConfig
from rstar_jax.models import PPM, Decoder, MeshConfig, ModelConfig, make_mesh
from rstar_jax.search.steps import build_prompt
from rstar_jax.train import (
    NonFiniteError,
    bradley_terry_loss,
    make_optimizer,
    pair_examples,
    pqm_loss,
    sft_examples,
    sft_loss,
    train,
    value_examples,
)

CONFIG = ModelConfig(
    model_type="qwen2",
    vocab_size=128,
    hidden_size=32,
    intermediate_size=48,
    num_layers=1,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rms_norm_eps=1e-6,
    rope_theta=1e4,
    max_position_embeddings=128,
    tie_word_embeddings=True,
    qkv_bias=True,
)
EOS = 2


def encode(text: str) -> list[int]:
    return [min(ord(ch), 127) for ch in text]


def sft_records(n: int = 16) -> list[dict]:
    return [{"query": f"{i}+{i}", "response": f"<answer>{2 * i}", "id": f"p{i}"} for i in range(n)]


def small_cfg(**kw) -> TrainConfig:
    base = dict(steps=3, batch_size=4, max_length=112, learning_rate=1e-2, compute_dtype="float32", log_every=1)
    return TrainConfig(**(base | kw))


def test_sft_examples_mask_response_and_eos_only():
    ex = sft_examples([{"query": "Q", "response": "ab", "id": "x"}], encode, EOS, 112)
    prompt = encode(build_prompt("Q", ()))
    tokens, mask, loss_mask = ex.arrays["tokens"][0], ex.arrays["mask"][0], ex.arrays["loss_mask"][0]
    n = len(prompt)
    assert tokens[: n + 3].tolist() == prompt + encode("ab") + [EOS]
    assert mask.sum() == n + 3 and loss_mask.sum() == 3 and loss_mask[n : n + 3].all()
    with pytest.raises(ValueError, match="'x'.*max_length=8"):
        sft_examples([{"query": "Q", "response": "ab", "id": "x"}], encode, EOS, 8)


def test_sft_loss_is_cross_entropy_on_response_tokens():
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    ex = sft_examples(sft_records(2), encode, EOS, 112)
    batch = {k: jnp.asarray(v) for k, v in ex.arrays.items()}
    loss, aux = sft_loss(model, batch)
    tokens, mask, lm = ex.arrays["tokens"], ex.arrays["mask"], ex.arrays["loss_mask"]
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    logits = np.asarray(model(batch["tokens"], jnp.asarray(positions), batch["mask"])[0], np.float64)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    nll = [-logp[b, t - 1, tokens[b, t]] for b in range(2) for t in range(1, 112) if lm[b, t]]
    np.testing.assert_allclose(float(loss), np.mean(nll), rtol=1e-5)
    assert float(aux["tokens"]) == lm.sum()


def test_bradley_terry_uses_pair_weights():
    ppm = PPM(CONFIG, rngs=nnx.Rngs(1))
    pairs = [
        {"prompt": "P", "pos": "good", "neg": "bad", "pos_count": 2, "neg_count": 2, "id": "a"},
        {"prompt": "P", "pos": "fine", "neg": "awful", "pos_count": 1, "neg_count": 4, "id": "b"},
        {"prompt": "R", "pos": "yes", "neg": "no", "pos_count": 1, "neg_count": 1, "id": "c"},
    ]
    ex = pair_examples(pairs, encode, 16)
    np.testing.assert_allclose(ex.arrays["weight"], [0.25, 0.25, 1.0])
    batch = {k: jnp.asarray(v) for k, v in ex.arrays.items()}
    loss, aux = bradley_terry_loss(ppm, batch)

    def score(tokens, mask):
        pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
        return np.asarray(ppm(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask)), np.float64)

    diff = score(ex.arrays["pos_tokens"], ex.arrays["pos_mask"]) - score(ex.arrays["neg_tokens"], ex.arrays["neg_mask"])
    w = np.array([0.25, 0.25, 1.0])
    np.testing.assert_allclose(float(loss), (w * np.log1p(np.exp(-diff))).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["accuracy"]), np.mean(diff > 0))


def test_pqm_loss_is_mse_on_q():
    ppm = PPM(CONFIG, rngs=nnx.Rngs(2))
    ex = value_examples([{"text": "abc", "q": 0.5, "id": "a"}, {"text": "xy", "q": -1.0, "id": "b"}], encode, 8)
    batch = {k: jnp.asarray(v) for k, v in ex.arrays.items()}
    loss, _ = pqm_loss(ppm, batch)
    pos = np.maximum(np.cumsum(ex.arrays["mask"], 1) - 1, 0)
    v = np.asarray(ppm(batch["tokens"], jnp.asarray(pos), batch["mask"]), np.float64)
    np.testing.assert_allclose(float(loss), np.mean((v - [0.5, -1.0]) ** 2), rtol=1e-5)


def test_schedule_warmup_then_linear_decay():
    cfg = small_cfg(steps=10, warmup_steps=2, learning_rate=1.0, weight_decay=0.0, max_grad_norm=0.0)
    tx = make_optimizer(cfg)
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    lrs = []
    for _ in range(10):
        # Adam's first update with a constant gradient is -lr * sign(g): the step size reads the schedule.
        upd, state = tx.update({"w": jnp.ones(())}, state, params)
        lrs.append(-float(upd["w"]))
    np.testing.assert_allclose(lrs[:3], [0.0, 0.5, 1.0], atol=1e-3)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    with pytest.raises(ValueError, match="decay"):
        make_optimizer(small_cfg(decay="step"))


def test_non_finite_loss_names_step_and_problem_ids(tmp_path):
    ex = sft_examples(sft_records(8), encode, EOS, 112)

    def poisoned(model, batch):
        loss, aux = sft_loss(model, batch)
        bad = jnp.any(batch["tokens"] == ord("7"))  # only problem p7 ("7+7", response "<answer>14") has a '7'
        return jnp.where(bad, jnp.nan, loss), aux

    with pytest.raises(NonFiniteError, match=r"step \d+: non-finite.*'p7'"):
        train(Decoder(CONFIG, rngs=nnx.Rngs(0)), poisoned, ex, cfg=small_cfg(steps=4), workdir=tmp_path)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").glob("[0-9]*/params"))


def test_sft_loss_falls_and_metrics_are_logged(tmp_path):
    ex = sft_examples(sft_records(16), encode, EOS, 112)
    fit, held = ex.split(0.25, seed=0)
    cfg = small_cfg(steps=12, accum_steps=2, eval_every=6, save_every=6)
    _, final = train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, fit, cfg=cfg, workdir=tmp_path, eval_examples=held)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = next(x for x in lines if x["step"] == 1)
    assert final["loss"] < 0.6 * first["loss"]
    assert any("eval_loss" in x and x["step"] == 6 for x in lines) and "eval_loss" in final


def test_eight_devices_same_loss_as_one(tmp_path):
    ex = sft_examples(sft_records(16), encode, EOS, 112)
    cfg = small_cfg(steps=2, accum_steps=2)
    results = []
    for name, mesh in (
        ("one", make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1])),
        ("eight", make_mesh(MeshConfig(2, 2, 2))),
    ):
        model, final = train(
            Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=tmp_path / name, mesh=mesh
        )
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        results.append((lines[0]["loss"], final["loss"], nnx.to_pure_dict(nnx.state(model))))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5), results[0][2], results[1][2]
    )


def test_bf16_compute_keeps_fp32_master_and_tracks_fp32_loss(tmp_path):
    ex = sft_examples(sft_records(8), encode, EOS, 112)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        model, final = train(
            Decoder(CONFIG, rngs=nnx.Rngs(0)),
            sft_loss,
            ex,
            cfg=small_cfg(steps=1, compute_dtype=dtype),
            workdir=tmp_path / dtype,
        )
        losses[dtype] = final["loss"]
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(model))))
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=2e-2)
    assert losses["bfloat16"] != losses["float32"]  # the bf16 path really ran in bf16


def test_a_batch_the_mesh_cannot_split_is_an_error_naming_the_array():
    from rstar_jax.train.loop import _batch_shardings

    mesh = make_mesh(MeshConfig(2, 2, 2))
    assert _batch_shardings({"tokens": np.zeros((1, 8, 4), np.int32)}, mesh)["tokens"].spec[1] == ("data", "fsdp")
    with pytest.raises(ValueError, match=r"batch array 'tokens'.*\('act_batch', 6\).*size 4"):
        _batch_shardings({"tokens": np.zeros((1, 6, 4), np.int32)}, mesh)


def test_remat_recomputes_the_layers_with_the_same_loss_and_gradients(tmp_path):
    ex = sft_examples(sft_records(4), encode, EOS, 112)
    batch = {k: jnp.asarray(v) for k, v in ex.arrays.items()}
    results, jaxprs = [], []  # jaxprs: the primitives of the layer scan's body
    for remat in (False, True):
        model = Decoder(CONFIG.replace(remat=remat), rngs=nnx.Rngs(0))
        graph, params = nnx.split(model)

        def loss(p, graph=graph):
            return sft_loss(nnx.merge(graph, p), batch)[0]

        scan = next(e for e in jax.make_jaxpr(loss)(params).jaxpr.eqns if e.primitive.name == "scan")
        jaxprs.append({e.primitive.name for e in scan.params["jaxpr"].jaxpr.eqns})
        results.append(jax.value_and_grad(loss)(params))
    assert "remat2" not in jaxprs[0] and jaxprs[1] == {"remat2"}  # the layer body really is rematerialised
    np.testing.assert_allclose(float(results[1][0]), float(results[0][0]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1]), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    _, plain = train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=small_cfg(), workdir=tmp_path / "a")
    _, remat = train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=small_cfg(remat=True), workdir=tmp_path / "b")
    np.testing.assert_allclose(remat["loss"], plain["loss"], rtol=1e-6)
