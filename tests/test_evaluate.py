"""`launch.evaluate`: tiny random models through every test-time method, resumption after SIGKILL, bad input."""

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flax import nnx

from rstar_jax.config import ConfigError, EvalConfig, EvalMethod
from rstar_jax.config_validation import validate
from rstar_jax.evaluation import PredictionFile, evaluate, read_rows
from rstar_jax.models import PPM, save_ppm
from rstar_jax.toy.splits import ToySpec, generate_toy_splits
from rstar_jax.toy.tiny_model import setup_model_config, write_tiny_model
from rstar_jax.toy.tokenizer import train_toy_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """(policy dir, PPM dir): random models of configs/micro.py's toy_model shape."""
    cfg = importlib.import_module("configs.micro").get_config()
    splits = generate_toy_splits(ToySpec(train_per_band=8, test_per_band=2, seed=0))
    tokenizer = train_toy_tokenizer(splits["train"], vocab_size=cfg.toy_model.vocab)
    config = setup_model_config(cfg.toy_model, tokenizer)
    root = tmp_path_factory.mktemp("eval_models")
    policy = write_tiny_model(root / "policy", tokenizer, config, seed=0)
    save_ppm(PPM.from_policy(policy, nnx.Rngs(1)), root / "ppm", tokenizer=tokenizer)
    return root / "policy", root / "ppm"


def _cfg(tmp_path, dirs, **eval_fields):
    cfg = importlib.import_module("configs.micro").get_config()
    cfg.workdir, cfg.compile_cache = str(tmp_path / "wd"), ""
    cfg.search = dataclasses.replace(cfg.search, max_depth=3, max_step_tokens=12, protocol_runs=2, protocol_top_k=2)
    fields = dict(benchmarks=("toy",), problems=2, budgets=(1, 2), chunk=2, policy=str(dirs[0]))
    fields.update(reward_model=str(dirs[1]), out=str(tmp_path / "out"))
    cfg.eval = EvalConfig(**{**fields, **eval_fields})
    return validate(cfg)


def _check_rows(out: Path, name: str, ids: list[str], budgets=(1, 2)):
    for method in EvalMethod:
        for budget in (1,) if method is EvalMethod.GREEDY else budgets:
            rows = read_rows(out / name / f"{method.value}@{budget}.jsonl")
            assert [r["id"] for r in rows] == ids, (method, budget)
            assert sum(r["generated_tokens"] for r in rows) > 0, (method, budget)
            for r in rows:
                assert r["generated_tokens"] >= 0 and r["prefilled_tokens"] > 0 and r["trajectories"] >= 0
                if method in (EvalMethod.GREEDY, EvalMethod.MAJORITY):
                    assert r["reward_calls"] == 0
                elif method in (EvalMethod.BEST_OF_N, EvalMethod.WEIGHTED_VOTE):
                    assert r["reward_calls"] == budget  # every sampled trajectory scored once
                assert isinstance(r["correct"], bool) and r["wall_s"] >= 0


def test_every_method_on_the_toy_writes_predictions_tables_and_curves(tmp_path, tiny_dirs):
    cfg = _cfg(tmp_path, tiny_dirs)
    result = evaluate(cfg)
    out = tmp_path / "out"
    toy_ids = [r["id"] for r in read_rows(out / "toy" / "greedy@1.jsonl")]
    assert len(toy_ids) == 2
    _check_rows(out, "toy", toy_ids)
    cells = json.loads((out / "results.json").read_text())
    assert {(c["method"], c["budget"]) for c in cells} == {("greedy", 1)} | {
        (m.value, b) for m in EvalMethod if m is not EvalMethod.GREEDY for b in (1, 2)
    }
    assert all(c["interval"][0] <= c["accuracy"] <= c["interval"][1] for c in cells)
    table = (out / "results.md").read_text()
    assert table.count("\n| toy |") == len(EvalMethod)
    assert [p.name for p in result["curves"]] == ["curves_toy.png"]
    assert (out / "curves_toy.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "toy" / "mcts@2.jsonl").read_bytes()
    evaluate(cfg)  # a finished run reruns nothing
    assert (out / "toy" / "mcts@2.jsonl").read_bytes() == before


def test_every_method_on_five_math500_problems(tmp_path, tiny_dirs):
    bench = ROOT.parent / "shared" / "data" / "benchmarks"
    if not os.environ.get("RSTAR_BENCHMARK_DIR") and not (bench / "math500_test.json").exists():
        pytest.skip(f"benchmark data absent ({bench}); set RSTAR_BENCHMARK_DIR")
    cfg = _cfg(tmp_path, tiny_dirs, benchmarks=("math500",), problems=5, budgets=(2,), chunk=5)
    evaluate(cfg)
    ids = [f"math500/{r['id'].split('/')[-1]}" for r in read_rows(tmp_path / "out" / "math500" / "greedy@1.jsonl")]
    assert len(ids) == 5
    _check_rows(tmp_path / "out", "math500", ids, budgets=(2,))


def test_a_torn_last_line_is_dropped_and_ids_are_never_written_twice(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"id": "a", "correct": true}\n{"id": "b", "corr')
    store = PredictionFile(path)
    assert store.done == {"a"} and path.read_bytes() == b'{"id": "a", "correct": true}\n'
    store.append([{"id": "b"}])
    with pytest.raises(ValueError, match="'b' is already recorded"):
        store.append([{"id": "b"}])
    path.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="m.jsonl:2"):
        PredictionFile(path)


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path, tiny_dirs):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "launch.evaluate", "--config=configs/micro.py", f"--config.workdir={tmp_path}",
            f"--config.compile_cache={tmp_path / 'xla'}", "--config.eval.benchmarks=toy", "--config.eval.problems=6",
            "--config.eval.methods=greedy,majority", "--config.eval.budgets=2", "--config.eval.chunk=1",
            "--config.search.max_depth=3", "--config.search.max_step_tokens=12",
            f"--config.eval.policy={tiny_dirs[0]}", f"--config.eval.out={out}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    greedy = out / "toy" / "greedy@1.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if greedy.exists() and greedy.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_rows(greedy)
    assert 2 <= len(partial) < 6 or not (out / "toy" / "majority@2.jsonl").exists()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("greedy@1", "majority@2"):
        ids = [r["id"] for r in read_rows(out / "toy" / f"{name}.jsonl")]
        assert len(ids) == len(set(ids)) == 6, (name, ids)
    assert read_rows(greedy)[: len(partial)] == partial


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(benchmarks=("math5000",)), "unknown benchmark 'math5000'"),
        (dict(budgets=(4, 2)), "config.eval.budgets"),
        (dict(methods=()), "config.eval.methods"),
    ],
)
def test_bad_eval_config_names_the_key(tmp_path, change, message):
    cfg = importlib.import_module("configs.micro").get_config()
    cfg.eval = EvalConfig(**change)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_bad_models_and_files_name_the_flag(tmp_path, tiny_dirs):
    with pytest.raises(FileNotFoundError, match="config.eval.policy"):
        evaluate(_cfg(tmp_path, tiny_dirs, policy=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="config.eval.reward_model"):
        evaluate(_cfg(tmp_path, tiny_dirs, reward_model=""))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(Exception, match="empty.jsonl"):
        evaluate(_cfg(tmp_path, tiny_dirs, benchmarks=(), problem_file=str(empty)))
    other = tmp_path / "other"
    splits = generate_toy_splits(ToySpec(train_per_band=3, test_per_band=1, seed=5))
    tokenizer = train_toy_tokenizer(splits["train"], vocab_size=448)
    cfg = importlib.import_module("configs.micro").get_config()
    config = setup_model_config(dataclasses.replace(cfg.toy_model, vocab=448), tokenizer)
    save_ppm(
        PPM.from_policy(write_tiny_model(other, tokenizer, config, seed=0), nnx.Rngs(1)), other, tokenizer=tokenizer
    )
    with pytest.raises(ConfigError, match="different tokenizers"):
        evaluate(_cfg(tmp_path, tiny_dirs, reward_model=str(other)))
