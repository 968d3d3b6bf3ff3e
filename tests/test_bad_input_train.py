"""Bad input to `launch.train` and the training loop: records of the wrong kind or shape, an `--out` or workdir
that cannot be written, a resume under another training config; and the one-line OS errors of `cli.run`.

Records and paths are refused before any model loads (one short subprocess each); the resume rule is checked
in-process on a one-layer decoder (a few seconds on CPU).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx
from helpers_launch import ROOT, assert_refused, launch
from safetensors.numpy import save_file

from rstar_jax.checkpoint import CheckpointMismatchError
from rstar_jax.config import TrainConfig
from rstar_jax.models import Decoder, ModelConfig
from rstar_jax.train import RecordError, check_records, sft_examples, sft_loss, train
from rstar_jax.workdir import WorkdirLock, check_output_dir, check_writable_dir

MICRO = "--config=configs/micro.py"
SFT = [{"query": "1+1?", "response": "2", "id": "p0"}, {"query": "2+2?", "response": "4", "id": "p1"}]
PPM = [{"prompt": "1+1?", "pos": " 2", "neg": " 3", "pos_count": 1, "neg_count": 1, "id": "p0"}]
PQM = [{"text": "1+1? 2", "q": 0.5, "id": "p0"}]

RECORD_CASES = [
    # (case id, kind, records, what the message must name)
    ("sft_as_ppm", "ppm", SFT, ["record 0 has no field 'prompt'", "looks like sft data (--kind=sft?)"]),
    ("sft_as_pqm", "pqm", SFT, ["record 0 has no field 'text'", "--kind=sft?"]),
    ("ppm_as_sft", "sft", PPM, ["record 0 has no field 'query'", "--kind=ppm?"]),
    ("strings", "sft", ["a", "b"], ["record 0 is a string, expected an object with fields query, response, id"]),
    ("no_id", "sft", [SFT[0], {"query": "q", "response": "r"}], ["record 1 has no field 'id'"]),
    ("null_response", "sft", [{**SFT[0], "response": None}], ["record 0: field 'response' must be a string, got null"]),
    ("q_text", "pqm", [{**PQM[0], "q": "abc"}], ["record 0: field 'q' must be a finite number, got 'abc'"]),
    ("q_nan", "pqm", [PQM[0], {**PQM[0], "q": float("nan")}], ["record 1: field 'q' must be a finite number"]),
    ("q_bool", "pqm", [{**PQM[0], "q": True}], ["field 'q' must be a finite number"]),
    ("negative_count", "ppm", [{**PPM[0], "pos_count": -1}], ["record 0: field 'pos_count' must be an integer >= 0"]),
    ("float_count", "orm", [{**PPM[0], "neg_count": 1.5}], ["field 'neg_count' must be an integer >= 0"]),
    ("empty_id", "sft", [{**SFT[0], "id": ""}], ["record 0: field 'id' must be a non-empty string or integer"]),
    ("empty", "sft", [], ["no records (an empty list)"]),
    ("object", "ppm", {"a": 1}, ["expected a JSON list of ppm records, got an object"]),
]


@pytest.mark.parametrize(("case", "kind", "records", "culprits"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_records_are_checked_naming_file_index_and_field(case, kind, records, culprits):
    with pytest.raises(RecordError) as err:
        check_records(kind, records, "data.json")
    assert str(err.value).startswith("data.json: ")
    for culprit in culprits:
        assert culprit in str(err.value), str(err.value)


def test_good_records_of_every_kind_pass():
    for kind, records in (("sft", SFT), ("ppm", PPM), ("orm", PPM), ("pqm", PQM)):
        check_records(kind, records, "data.json")
    check_records("ppm", [{**PPM[0], "pos_count": 0, "id": 7}], "data.json")  # a zero count and an integer id


def _model_dir(tmp: pathlib.Path) -> str:
    """config.json and a safetensors header: enough for the checks `launch.train` makes before loading weights."""
    d = tmp / "model"
    d.mkdir()
    hf = {"model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32}
    hf |= {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}
    (d / "config.json").write_text(json.dumps(hf))
    save_file({"x": np.zeros(2, np.float32)}, str(d / "model.safetensors"))  # a readable header is all they read
    return str(d)


def test_train_refuses_bad_records_and_unusable_paths_before_any_work(tmp_path):
    model, wd, out = _model_dir(tmp_path), tmp_path / "wd", tmp_path / "out"
    common = [MICRO, f"--model={model}", f"--config.workdir={wd}"]
    sft = tmp_path / "sft.json"
    sft.write_text(json.dumps(SFT))
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cases = [
        (["--kind=ppm", f"--data={sft}", f"--out={out}"], [f"--data={sft}: record 0 has no field 'prompt'"]),
        (["--kind=sft", f"--data={empty}", f"--out={out}"], [f"--data={empty}: no records"]),
        (["--kind=sft", f"--data={sft}", f"--out={a_file}"], [f"--out={a_file}", "not a directory"]),
        (["--kind=sft", f"--data={sft}", f"--out={a_file / 'sub'}"], [f"{a_file} is not a directory"]),
    ]
    for args, culprits in cases:
        assert_refused(launch("train", *common, *args), *culprits)
    (pathlib.Path(model) / "model.safetensors").write_bytes(b"")
    proc = launch("train", *common, "--kind=sft", f"--data={sft}", f"--out={out}")
    assert_refused(proc, f"--model={model}", "model.safetensors: not a safetensors file (0 bytes")
    save_file({"x": np.zeros(2, np.float32)}, str(pathlib.Path(model) / "model.safetensors"))
    assert not wd.exists() and not out.exists() and a_file.read_text() == "keep me"
    # a workdir that is a file: named, and the file is kept
    proc = launch("train", MICRO, f"--model={model}", f"--config.workdir={a_file}", "--kind=sft", f"--data={sft}",
                  f"--out={out}")  # fmt: skip
    assert_refused(proc, f"config.workdir = '{a_file}'", "not a directory")
    assert a_file.read_text() == "keep me" and not out.exists()


def test_writable_dir_checks_name_the_path(tmp_path, monkeypatch):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert check_writable_dir(tmp_path / "new" / "deeper", "key") == tmp_path / "new" / "deeper"
    with pytest.raises(NotADirectoryError, match=f"key: {a_file} is not a directory"):
        check_writable_dir(a_file, "key")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        check_output_dir(a_file, "--out=f")
    monkeypatch.setattr(os, "access", lambda *a: False)  # as a read-only file system answers (root ignores modes)
    with pytest.raises(PermissionError, match=f"--out=x: {tmp_path} is not writable"):
        check_output_dir(tmp_path / "x", "--out=x")
    with pytest.raises(PermissionError, match=f"config.workdir = '{tmp_path / 'w'}': {tmp_path} is not writable"):
        WorkdirLock(tmp_path / "w").acquire()
    assert not (tmp_path / "x").exists() and not (tmp_path / "w").exists()


_RAISES = """
import errno, os, sys
from rstar_jax import cli

def main(argv):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), sys.argv[1])

cli.run(main)
"""


def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    script = tmp_path / "raises.py"
    script.write_text(_RAISES)
    path = str(tmp_path / "ro" / "out")
    proc = subprocess.run([sys.executable, str(script), path], cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = assert_refused(proc, path)
    assert line == f"error: {path}: {os.strerror(errno.EROFS)} (errno EROFS)"


def _tiny_run(tmp: pathlib.Path, **changes) -> int:
    """Trains a one-layer decoder in `tmp / 'run'` with the given TrainConfig changes; returns the last step."""
    config = ModelConfig(model_type="qwen2", vocab_size=128, hidden_size=16, intermediate_size=32, num_layers=1,
                         num_heads=2, num_kv_heads=1, head_dim=8, rms_norm_eps=1e-6, rope_theta=1e4,
                         max_position_embeddings=128, tie_word_embeddings=True, qkv_bias=True)  # fmt: skip
    records = [{"query": f"{i}+1", "response": f"{i + 1}", "id": f"p{i}"} for i in range(8)]
    examples = sft_examples(records, lambda s: [min(ord(c), 127) for c in s], 2, 112)
    settings = dict(steps=2, batch_size=4, max_length=112, learning_rate=1e-3, compute_dtype="float32", save_every=1)
    cfg = TrainConfig(**(settings | changes))
    _, summary = train(Decoder(config, rngs=nnx.Rngs(0)), sft_loss, examples, cfg=cfg, workdir=tmp / "run",
                       progress=False)  # fmt: skip
    metrics = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(summary["loss"])
    return metrics[-1]["step"]


def test_a_resume_under_another_training_config_is_refused_naming_the_keys(tmp_path):
    assert _tiny_run(tmp_path) == 2
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    with pytest.raises(CheckpointMismatchError, match=r"\(batch_size: 4 -> 2; learning_rate: 0\.001 -> 0\.01\)"):
        _tiny_run(tmp_path, learning_rate=1e-2, batch_size=2)
    with pytest.raises(CheckpointMismatchError, match=r"step 2 was trained with other settings \(seed: 42 -> 1\)"):
        _tiny_run(tmp_path, seed=1)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == steps  # nothing was saved
    assert _tiny_run(tmp_path, steps=3, remat=True) == 3  # more steps (and remat) continue the finished run
