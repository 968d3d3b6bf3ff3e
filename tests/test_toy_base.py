"""The committed toy base: its build command (CI-sized), its files against its manifest, and its corpus disjoint
from every toy split the configs use."""

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rstar_jax.config import ToyBaseConfig
from rstar_jax.data import normalize_question
from rstar_jax.toy import ToySpec, base_corpus, generate_toy_splits
from rstar_jax.toy.base_build import MANIFEST, build_base, check_base

REPO = Path(__file__).resolve().parents[1]


def _micro_base_config(tmp_path: Path, steps: int = 3):
    cfg = importlib.import_module("configs.toy_base").get_config()
    return dataclasses.replace(
        cfg,
        workdir=str(tmp_path / "work"),
        progress_bars=False,
        compile_cache="",
        model=dataclasses.replace(importlib.import_module("configs.micro").get_config().model, base=""),
        toy_model=dataclasses.replace(importlib.import_module("configs.micro").get_config().toy_model, read_per_band=0),
        toy_base=ToyBaseConfig(
            corpus_per_band=12, held_out_per_band=1, tokenizer_per_band=12, out=str(tmp_path / "base")
        ),
        pretrain=dataclasses.replace(
            cfg.pretrain, steps=steps, batch_size=4, save_every=2, eval_every=0, log_every=1, warmup_steps=1
        ),
        search=dataclasses.replace(cfg.search, max_depth=3, max_step_tokens=16),
    )


def test_build_exports_a_checked_base_and_resumes(tmp_path):
    cfg = _micro_base_config(tmp_path)
    manifest = build_base(cfg, progress=False)
    out = Path(cfg.toy_base.out)
    assert manifest["steps"] == {"done": 3, "planned": 3}
    assert set(manifest["sha256"]) == {p.name for p in out.iterdir()} - {MANIFEST}
    assert {"config.json", "model.safetensors", "tokenizer.json", base_corpus.QUESTIONS_FILE} <= set(manifest["sha256"])
    assert manifest["corpus"]["problems"] == 36 and manifest["corpus"]["held_out_problems"] == 3
    assert {"eval_loss", "greedy", "greedy_gsm", "greedy_olympiad"} <= set(manifest["metrics"])
    assert len(base_corpus.QuestionSet.load(out / base_corpus.QUESTIONS_FILE)) == 39

    # A longer plan continues from the checkpoint of step 3 (the piece log shows both pieces).
    longer = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, steps=4))
    again = build_base(longer, progress=False)
    assert again["steps"]["done"] == 4 and [p["step"] for p in again["pieces"]] == [3, 4]
    metrics = [json.loads(line) for line in (Path(cfg.workdir) / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]  # step 4 trained once, steps 1-3 not again

    (out / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="tokenizer.json: sha256 differs"):
        check_base(out)


def test_launch_pretrain_runs_a_timed_piece(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "launch.pretrain",
        "--config=configs/toy_base.py",
        f"--config.workdir={tmp_path}/w",
        f"--config.toy_base.out={tmp_path}/b",
        "--config.toy_base.corpus_per_band=6",
        "--config.toy_base.held_out_per_band=0",
        "--config.toy_base.tokenizer_per_band=6",
        "--config.toy_base.minutes=0.0001",
        "--config.toy_model.layers=1",
        "--config.toy_model.hidden=32",
        "--config.toy_model.heads=2",
        "--config.toy_model.kv_heads=1",
        "--config.toy_model.vocab=384",
        "--config.pretrain.batch_size=2",
        "--config.compile_cache=",
        "--config.progress_bars=false",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = check_base(tmp_path / "b")
    planned = importlib.import_module("configs.toy_base").get_config().pretrain.steps
    assert manifest["steps"]["done"] == 1 and manifest["steps"]["planned"] == planned  # stopped after one step
    assert f"toy base: step 1 of {planned}" in done.stdout


def test_splits_exclude_the_base_questions():
    probe = generate_toy_splits(ToySpec(train_per_band=3, test_per_band=2, seed=5), exclude=frozenset())
    read = base_corpus.QuestionSet.from_problems(probe["test"][:2] + probe["train"][:1])
    splits = generate_toy_splits(ToySpec(train_per_band=3, test_per_band=2, seed=5), exclude=read)
    texts = [p.question for ps in splits.values() for p in ps]
    assert not any(t in read for t in texts)
    assert len(texts) == 15 and splits["test"][2:] == probe["test"][2:]  # only the read problems were redrawn


def _config_seeds() -> set[int]:
    seeds = set()
    for path in sorted((REPO / "configs").glob("*.py")):
        cfg = importlib.import_module(f"configs.{path.stem}")
        if hasattr(cfg, "get_config"):
            c = cfg.get_config()
            if not c.data.train_file:
                seeds.add(c.toy.seed)
    return seeds


@pytest.mark.skipif(not (base_corpus.BASE_DIR / MANIFEST).is_file(), reason="no committed toy base yet")
def test_committed_base_matches_its_manifest_and_is_disjoint_from_every_config_split():
    manifest = check_base(base_corpus.BASE_DIR)  # every file against its sha256
    spec = manifest["config"]["toy_base"]
    per_band = spec["corpus_per_band"] + spec["held_out_per_band"]
    corpus = base_corpus.corpus_problems(per_band, spec["corpus_seed"])
    shipped = base_corpus.committed_questions()
    assert np.array_equal(shipped.hashes, base_corpus.QuestionSet.from_problems(corpus).hashes)
    assert shipped.fingerprint() == manifest["corpus"]["questions_sha256"]
    read = {normalize_question(p.question) for p in corpus}
    for seed in _config_seeds() | {1, 2}:
        splits = generate_toy_splits(ToySpec(train_per_band=300, test_per_band=100, seed=seed))
        for name, problems in splits.items():
            hit = [p.id for p in problems if normalize_question(p.question) in read]
            assert not hit, f"seed {seed} {name} holds base-corpus questions {hit[:3]}"
