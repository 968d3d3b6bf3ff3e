"""Reading pretraining of the toy base: documents of problems disjoint from the splits, with no code or answers,
and the base stage that pretrains on them (resumable, recorded in its manifest)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rstar_jax.config import RunConfig, TrainConfig
from rstar_jax.data import normalize_question
from rstar_jax.models import load_decoder
from rstar_jax.toy import BANDS, ToySpec, generate_toy_splits
from rstar_jax.toy.reading import READ_SPLIT, reading_document, reading_examples, reading_problems
from rstar_jax.toy.tiny_model import write_toy_base

SPLITS = generate_toy_splits(ToySpec(train_per_band=6, test_per_band=4, seed=3))


def test_reading_problems_are_disjoint_seeded_and_without_code_or_answers():
    run = [*SPLITS["train"], *SPLITS["test"]]
    docs = reading_problems(run, per_band=20, seed=3)
    assert len(docs) == 20 * len(BANDS)
    assert all(p.id.startswith(f"toy/{READ_SPLIT}/") for p in docs)
    assert not {normalize_question(p.question) for p in docs} & {normalize_question(p.question) for p in run}
    assert [p.id for p in reading_problems(run, 20, 3)] == [p.id for p in docs]
    assert {p.extra["band"] for p in reading_problems(run, 2, 3, bands=("math",))} == {"math"}
    assert [p.question for p in reading_problems(run, 20, 3)] == [p.question for p in docs]
    for p in docs:
        doc = reading_document(p)
        question, plan = doc.split("\n")
        assert question == p.question
        assert plan.count(".") == len(p.extra["steps"])  # one sentence per step
        assert "=" not in plan and "print" not in plan and "<" not in plan
        for step in p.extra["steps"]:
            assert step["comment"] in plan
    with pytest.raises(ValueError, match="toy/x"):
        reading_document(dataclasses.replace(docs[0], id="toy/x", extra={}))


def test_reading_examples_predict_every_token_after_the_first():
    docs = reading_problems([], per_band=2, seed=0)

    def encode(text: str) -> list[int]:
        return [ord(c) % 200 + 2 for c in text]

    ex = reading_examples(docs, encode, eos_id=1, max_length=64)
    assert ex.arrays["tokens"].shape == (len(docs), 64) and ex.ids == tuple(p.id for p in docs)
    first = [*encode(reading_document(docs[0])), 1][:64]
    np.testing.assert_array_equal(ex.arrays["tokens"][0, : len(first)], first)
    np.testing.assert_array_equal(ex.arrays["loss_mask"], ex.arrays["mask"])
    long = reading_examples(docs, encode, eos_id=1, max_length=512)
    n = len(encode(reading_document(docs[1]))) + 1
    assert long.arrays["mask"][1].sum() == n and long.arrays["tokens"][1, n - 1] == 1  # ends with EOS


def test_base_stage_pretrains_and_resumes(tmp_path):
    from configs import micro

    cfg: RunConfig = micro.get_config()
    cfg.toy_model.read_per_band = 4
    cfg.pretrain = TrainConfig(
        steps=3, batch_size=4, max_length=128, learning_rate=1e-2, compute_dtype="float32", save_every=1, log_every=1
    )
    train, test = SPLITS["train"], SPLITS["test"]
    files, metrics = write_toy_base(cfg, train, test, tmp_path / "model", tmp_path / "work")
    assert {p.name for p in files} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert metrics["documents"] == 4 * len(BANDS) and np.isfinite(metrics["loss"])
    lines = [json.loads(x) for x in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    trained = load_decoder(tmp_path / "model")
    cfg.toy_model.read_per_band = 0
    write_toy_base(cfg, train, test, tmp_path / "scratch", tmp_path / "unused")
    scratch = load_decoder(tmp_path / "scratch")
    assert not np.allclose(np.asarray(trained.trunk.embed[...]), np.asarray(scratch.trunk.embed[...]))
    assert not (tmp_path / "unused").exists()
    # A rerun (what a resumed stage does) restores the finished checkpoint instead of training again.
    cfg.toy_model.read_per_band = 4
    write_toy_base(cfg, train, test, tmp_path / "again", tmp_path / "work")
    again = load_decoder(tmp_path / "again")
    np.testing.assert_array_equal(np.asarray(again.trunk.embed[...]), np.asarray(trained.trunk.embed[...]))
    relogged = [json.loads(x) for x in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in relogged if "loss" in x] == [1, 2, 3]  # no step trained twice
