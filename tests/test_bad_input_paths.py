"""Bad paths and flags for the other `launch/` commands: an output that is an existing file (refused, never
replaced), a busy evaluation workdir, a checkpoint whose JSON metadata is empty, `launch.plan`'s flags and a mesh
that does not divide the model. Each case is one short subprocess that exits 2 with one line naming the culprit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers_launch import assert_refused, launch

from rstar_jax.checkpoint import CheckpointCorruptError, Checkpointer
from rstar_jax.workdir import WorkdirLock


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("keep me")
    return path


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, a_file):
    wd = tmp_path / "wd"
    pretrain = launch(
        "pretrain", "--config=configs/toy_base.py", f"--config.toy_base.out={a_file}", f"--config.workdir={wd}"
    )
    assert_refused(pretrain, f"config.toy_base.out = '{a_file}'", "not a directory")
    assert not wd.exists()
    export = launch("export", f"--ckpt={tmp_path}", f"--out={a_file}")
    assert_refused(export, f"--out={a_file}", "exists and is not a directory")
    view = launch("view", f"--trees={a_file}", f"--out={tmp_path}")
    assert_refused(view, f"--out={tmp_path}", "is a directory")
    view = launch("view", f"--trees={a_file}", f"--out={a_file / 'page.html'}")
    assert_refused(view, f"--out={a_file / 'page.html'}", f"{a_file} is not a directory")
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_second_evaluation_of_a_busy_workdir_is_refused(tmp_path):
    wd = tmp_path / "wd"
    with WorkdirLock(wd):
        before = sorted(p.name for p in wd.iterdir())
        proc = launch("evaluate", "--config=configs/eval.py", f"--config.workdir={wd}", "--config.eval.problems=1")
        assert_refused(proc, f"workdir {wd} in use by pid {os.getpid()}")
        assert sorted(p.name for p in wd.iterdir()) == before
    out = tmp_path / "elsewhere"
    with WorkdirLock(out, "config.eval.out"):
        proc = launch("evaluate", "--config=configs/eval.py", f"--config.workdir={wd}", f"--config.eval.out={out}")
        assert_refused(proc, f"workdir {out} in use")


@pytest.mark.parametrize("item", ["config", "extra"])
def test_an_empty_json_metadata_file_is_named(tmp_path, item):
    ckpt = tmp_path / "checkpoints"
    with Checkpointer(ckpt, async_save=False) as c:
        c.save(1, params={"w": np.ones(3, np.float32)}, config={"a": 1}, extra={"step": 1})
    metadata = ckpt / "1" / item / "metadata"
    metadata.write_text("")
    with Checkpointer(ckpt, read_only=True) as c, pytest.raises(CheckpointCorruptError, match=str(metadata)):
        c.restore_config() if item == "config" else c.restore_extra()
    assert_refused(launch("inspect", f"--ckpt={ckpt}"), f"step 1: metadata file {metadata} is truncated or corrupt")


PLAN = ["--config=configs/round2.py", "--config.model.base=qwen2.5-math-1.5b", "--config.compile_cache="]


@pytest.mark.parametrize(
    ("args", "culprits"),
    [
        (["--devices=-3"], ["--devices=-3", ">= 1"]),
        (["--hbm_gb=-1"], ["--hbm_gb=-1.0", "positive"]),
        (["--hbm_gb=nan"], ["--hbm_gb=nan"]),
        (["--config.mesh.tensor=7"], ["'vocab', 151936", "'tensor' of size 7 (config.mesh.tensor)"]),
    ],
    ids=["devices", "hbm_negative", "hbm_nan", "tensor_7"],
)
def test_plan_refuses_bad_flags_and_an_indivisible_mesh(args, culprits):
    assert_refused(launch("plan", *PLAN, *args), *culprits)


NO_READING = "--config.toy_model.read_per_band=0"


def test_evolve_preflight_reads_benchmarks_and_weight_headers_before_writing(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "math500_test.json").write_text("garbage{{{")
    base = tmp_path / "base"
    base.mkdir()
    hf = {"model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32}
    hf |= {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}
    (base / "config.json").write_text(json.dumps(hf))
    (base / "model.safetensors").write_bytes(b"")
    wd = tmp_path / "wd"
    micro = ["--config=configs/micro.py", f"--config.workdir={wd}"]
    benchmarks = ["--config.data.eval_benchmarks=('math500',)", f"--config.data.benchmark_dir={bench}"]
    proc = launch("evolve", *micro, *benchmarks)
    assert_refused(proc, "config.data.eval_benchmarks: math500", str(bench / "math500_test.json"))
    proc = launch("evolve", *micro, f"--config.model.base={base}", NO_READING)
    assert_refused(proc, "config.model.base", f"{base / 'model.safetensors'}: not a safetensors file (0 bytes")
    assert not wd.exists()


def test_ablate_refuses_round_data_changed_since_its_manifest(tmp_path):
    from configs import micro
    from rstar_jax.config import ConfigError
    from rstar_jax.config_validation import validate
    from rstar_jax.evolve.inputs import preflight_ablation
    from rstar_jax.evolve.stages import StageRefused, Stages
    from rstar_jax.workdir import RunDir

    cfg = validate(micro.get_config())
    cfg.workdir = str(tmp_path / "wd")
    rd = RunDir(tmp_path / "wd").round(1)
    orm = rd.data / "orm.json"

    def extract():
        rd.data.mkdir(parents=True, exist_ok=True)
        orm.write_text('[{"prompt": "p", "pos": "a", "neg": "b", "pos_count": 1, "neg_count": 1, "id": "x"}]')
        return {"files": [orm], "counts": {"orm": 1}}

    Stages().run(rd.data, "round_1/extract", {"x": 1}, extract)
    for stage in (rd.sft, rd.ppm):
        stage.mkdir()
        (stage / "manifest.json").write_text("{}")
    preflight_ablation(cfg, 1)  # as the stage wrote it: fine
    orm.write_text('[{"text": "edited by hand"}]')
    with pytest.raises(StageRefused, match=f"{orm} changed since round 1's extract stage wrote it"):
        preflight_ablation(cfg, 1)
    with pytest.raises(ConfigError, match="round_2/data/manifest.json is missing"):
        preflight_ablation(cfg, 2)
