"""One real-data micro round with the real SmolLM2-135M-Instruct as base and bootstrap policy, on 3 GSM8K problems,
through the normal config path (`evolve`): trees, extraction, SFT, PPM; then 2 SFT steps from the base, exported
from the run's orbax checkpoint (`train.export`), which transformers reloads and generates with.

A 135M base with a couple of rollouts solves none of these problems, so the round's own SFT data is normally empty
(the SFT stage then exports the base untrained). The 2-step SFT job therefore trains on the round's records plus
one hand-written rStar-format solution per problem (the format the extractor writes), so that it always trains.
"""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers_real import smollm2  # noqa: F401  (the session fixture)

from rstar_jax import models
from rstar_jax.config import DataConfig, EvolveConfig, ExecutionConfig, ModelSetup, RunConfig, SearchConfig, TrainConfig
from rstar_jax.config_validation import validate
from rstar_jax.data import load_benchmark, write_problems
from rstar_jax.evolve.run import evolve
from rstar_jax.search.prompts import PROMPT_FILE, REFERENCE_DIR_ENV, default_reference_dir
from rstar_jax.search.steps import build_prompt
from rstar_jax.train import Kind, fit
from rstar_jax.train.export import export_run

pytestmark = pytest.mark.real_weights


def _train(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=2, max_length=384, learning_rate=1e-5, compute_dtype="float32",
                       eval_fraction=0.0, save_every=1, log_every=1)  # fmt: skip


def _gsm8k(n: int):
    try:
        return list(load_benchmark("gsm8k").problems)[:n]
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"GSM8K benchmark file not found ({err}); set $RSTAR_BENCHMARK_DIR or ../shared/data/benchmarks")


@pytest.mark.slow
def test_real_micro_round_then_two_sft_steps_exported_and_reloaded(smollm2, tmp_path):  # noqa: F811
    problems = _gsm8k(3)
    shots = default_reference_dir() / PROMPT_FILE  # round 1's few-shot prompt for a real policy
    if not shots.is_file():
        pytest.skip(f"{shots} not found; set ${REFERENCE_DIR_ENV} or ../shared/data/reference_records")
    train_file = tmp_path / "gsm8k3.jsonl"
    write_problems(train_file, problems)
    cfg = validate(
        RunConfig(
            workdir=str(tmp_path / "wd"),
            last_round=1,
            progress_bars=False,
            data=DataConfig(train_file=str(train_file)),
            model=ModelSetup(base=str(smollm2), pool_slots=8192, max_rows=16),
            search=SearchConfig(samples_per_expansion=2, max_depth=2, max_step_tokens=32, temperature=0.7),
            evolve=EvolveConfig(bootstrap_rollouts=1, unsolved_rollouts=0, full_eval_rounds=(), eval_samples=1),
            execution=ExecutionConfig(workers=1, timeout_s=5.0),
            sft=_train(2),
            ppm=_train(1),
        )
    )
    summary = evolve(cfg)
    rd = tmp_path / "wd" / "round_1"
    trees = [json.loads(line) for line in (rd / "trees" / "trees.jsonl").read_text().splitlines()]
    assert sorted(t["id"] for t in trees) == sorted(p.id for p in problems)
    assert all(t["num_nodes"] > 1 for t in trees), "the real policy expanded every root"
    stats = json.loads((rd / "data" / "stats.json").read_text())
    assert stats["problems"] == 3 and summary["rounds"]["1"]["coverage"]["all"]["total"] == 3
    assert (rd / "sft" / "policy" / "model.safetensors").is_file() and (rd / "ppm" / "model" / "config.json").is_file()

    written = [
        {"query": p.question, "response": f"<code>\nprint({p.answer[0]})\n<end_of_code>\n<output>{p.answer[0]}"
         f"<end_of_output>\n<answer>The answer is \\boxed{{{p.answer[0]}}}<end_of_answer>", "id": p.id}
        for p in problems
    ]  # fmt: skip
    records = json.loads((rd / "data" / "sft.json").read_text()) + written
    run = tmp_path / "sft_run"
    metrics = fit(Kind.SFT, records, init_dir=smollm2, out_dir=tmp_path / "fit_out", cfg=cfg.sft, workdir=run,
                  progress=False)  # fmt: skip
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and np.isfinite(metrics["loss"])
    exported = export_run(run, tmp_path / "export")
    assert exported.step == 2 and exported.head == "lm"

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "export"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"), dtype=torch.float32).eval()
    ids = tokenizer(build_prompt(problems[0].question, ()), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf.generate(ids, max_new_tokens=8, do_sample=False)
        ref_logits = hf(ids).logits.numpy()
    assert out.shape[1] == ids.shape[1] + 8 or out[0, -1].item() == tokenizer.eos_token_id
    n = ids.shape[1]
    ours, _ = models.load_decoder(tmp_path / "export")(
        ids.numpy().astype(np.int32), np.arange(n, dtype=np.int32)[None], np.ones((1, n), bool)
    )
    np.testing.assert_allclose(np.asarray(ours), ref_logits, atol=1e-3)
