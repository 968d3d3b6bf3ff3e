"""`launch.export` / `train.export`: a training run's orbax checkpoint -> HF directories that transformers loads,
the policy as a causal LM and the PPM as a sequence classifier serving the pre-tanh score."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers_launch import assert_refused, launch

from rstar_jax import models
from rstar_jax.config import TrainConfig
from rstar_jax.toy.base_corpus import BASE_DIR
from rstar_jax.train import Kind, fit
from rstar_jax.train.export import export_run

TEXTS = ["x = 3 + 4\nprint(x)", "y = 2 * 5"]


def _cfg() -> TrainConfig:
    return TrainConfig(steps=2, batch_size=2, max_length=64, learning_rate=1e-3, compute_dtype="float32",
                       eval_fraction=0.0, save_every=1, log_every=1)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two-step SFT and PPM runs from the committed toy base: {kind: (run workdir, fit's own export)}."""
    root = tmp_path_factory.mktemp("runs")
    sft = [{"query": f"q{i}", "response": f"x = {i}\nprint(x)", "id": f"p{i}"} for i in range(4)]
    pairs = [{"prompt": f"q{i}", "pos": " good", "neg": " bad", "pos_count": 1, "neg_count": 1, "id": f"p{i}"}
             for i in range(4)]  # fmt: skip
    out = {}
    for kind, records in ((Kind.SFT, sft), (Kind.PPM, pairs)):
        run, exported = root / kind.value / "run", root / kind.value / "model"
        fit(kind, records, init_dir=BASE_DIR, out_dir=exported, cfg=_cfg(), workdir=run, progress=False)
        out[kind] = (run, exported)
    return out


def _tensors(path):
    return models.read_safetensors(path)[0]


def test_exports_equal_fits_own_and_load_in_transformers(runs, tmp_path):
    policy_run, policy_fit = runs[Kind.SFT]
    ppm_run, ppm_fit = runs[Kind.PPM]
    done = export_run(policy_run.parent, tmp_path / "policy")  # the stage directory form
    assert (done.step, done.head) == (2, "lm")
    assert export_run(ppm_run / "checkpoints", tmp_path / "ppm").head == "value"
    for ours, fits in ((tmp_path / "policy", policy_fit), (tmp_path / "ppm", ppm_fit)):
        a, b = _tensors(ours), _tensors(fits)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "policy"))
    assert "<end_of_step>" in tokenizer.get_vocab()  # the run's tokenizer, rStar tokens included
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True, padding_side="right")
    mask = batch["attention_mask"].numpy().astype(bool)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    tokens = batch["input_ids"].numpy().astype(np.int32)
    with torch.no_grad():
        lm = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "policy")).eval()
        ref_logits = lm(**batch).logits.numpy()
        cls = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ppm")).eval()
        raw = cls(**batch).logits[:, 0].numpy()
    ours_logits, _ = models.load_decoder(tmp_path / "policy")(tokens, positions, mask)
    np.testing.assert_allclose(np.asarray(ours_logits)[mask], ref_logits[mask], atol=1e-4)
    ppm = models.load_ppm(tmp_path / "ppm")
    np.testing.assert_allclose(np.asarray(ppm.raw_scores(tokens, positions, mask)), raw, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ppm(tokens, positions, mask)), np.tanh(raw), atol=1e-4)
    head = json.loads((tmp_path / "ppm" / "config.json").read_text())["rstar_value_head"]
    assert head["transform"] == "tanh" and "pre-tanh" in head["served_score"]
    assert "served score is pre-tanh" in (tmp_path / "ppm" / "README.md").read_text()


def test_export_command_writes_a_chosen_step_and_refuses_bad_input(runs, tmp_path):
    policy_run, _ = runs[Kind.SFT]
    proc = launch("export", f"--ckpt={policy_run}", f"--out={tmp_path / 'step1'}", "--step=1")
    assert proc.returncode == 0 and "step 1" in proc.stdout, proc.stderr[-2000:]
    assert not np.array_equal(_tensors(tmp_path / "step1")["model.norm.weight"],
                              _tensors(runs[Kind.SFT][1])["model.norm.weight"])  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_refused(launch("export", f"--ckpt={empty}", f"--out={tmp_path / 'x'}"), str(empty))
    assert_refused(launch("export", f"--ckpt={policy_run}", f"--out={tmp_path / 'x'}", "--step=7"), "7")
    (policy_run / "tokenizer" / "tokenizer.json").unlink()
    assert_refused(launch("export", f"--ckpt={policy_run}", f"--out={tmp_path / 'x'}"), str(policy_run / "tokenizer"))
    assert not (tmp_path / "x").exists()
