"""The one-GPU check's rstar_jax figures (run by `benchmarks/device_check.sh`), written to a JSON as they come.

    python benchmarks/device_check.py --out=$OUT/device_check.json          # one H100 / H200, random weights
    python benchmarks/device_check.py --smoke --out=/tmp/dc.json            # tiny shapes on CPU, seconds

Figures, in this order (the JSON is rewritten after each, so a run cut short keeps what it measured):

- `matmul_tflops`: a bf16 [M, M] x [M, M] matmul (M = 8192, smoke 256), the MFU denominator measured here;
- `decode_<shape>`: `FlaxPolicy` decode tokens/s at B = 256, prompt 512, 256 new tokens (temperature 0.7) next to
  the HBM roofline (`benchmarks/bench_sampling.decode_throughput`: every parameter and the batch's KV read once
  per step at `--peak_bandwidth`), and the ahead-of-time compile seconds of its prefill and decode programs;
- `tree_1.5b`: the prefilled / unique token ratio of a depth-3, 4-children tree (32-token steps) expanded level by
  level (`bench_sampling.tree_workload`);
- `ppm_scoring_1.5b`: `FlaxPPMScorer` texts/s and tokens/s on 256 random texts of 512 tokens;
- `sft_step_1.5b`: the train loop's jitted SFT step (fp32 master, bf16 compute, AdamW) at sequence 2048, B = 2:
  compile seconds, tokens/s and MFU = 6 x params x tokens/s / `matmul_tflops` (attention FLOPs not counted);
- `decode_7b` last (the largest).

Goals (issue 17), figures never test assertions: decode >= 50 % of the roofline at 1.5B and >= 40 % at 7B,
compile <= 30 s, SFT >= 50 % MFU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/device_check.py`: make `rstar_jax` and `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.bench_sampling import (  # noqa: E402
    IdTokenizer,
    build_model,
    decode_throughput,
    preset_config,
    tree_workload,
)
from rstar_jax.config import TrainConfig  # noqa: E402
from rstar_jax.models import PPM, count_params, init_model  # noqa: E402
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams  # noqa: E402
from rstar_jax.train import loop  # noqa: E402
from rstar_jax.train.losses import sft_loss  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The shapes of one check: the real ones, or `--smoke`'s tiny ones."""

    small: str
    large: str
    batch: int
    prompt: int
    new_tokens: int
    matmul: int
    sft_batch: int
    sft_length: int
    score_texts: int
    score_length: int
    tree: tuple[int, int, int, int]  # depth, children, step tokens, pool slots


REAL = Sizes("qwen2.5-math-1.5b", "qwen2.5-math-7b", 256, 512, 256, 8192, 2, 2048, 256, 512, (3, 4, 32, 1 << 16))
SMOKE = Sizes("tiny", "tiny", 8, 32, 16, 256, 2, 32, 8, 32, (2, 2, 4, 512))


def matmul_tflops(m: int) -> float:
    a = jnp.ones((m, m), jnp.bfloat16)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(10):
        out = f(a, a)
    out.block_until_ready()
    return 2 * m**3 * 10 / (time.perf_counter() - start) / 1e12


def _top_id(config: Any) -> int:
    """Random token ids are drawn below this: 1000, or the vocabulary when smaller (an id past the vocabulary
    would embed as NaN and time a model sampling from NaN logits)."""
    return min(1000, config.vocab_size)


def tree_ratio(model: Any, s: Sizes) -> dict[str, Any]:
    depth, children, step_tokens, slots = s.tree
    policy = FlaxPolicy(model, IdTokenizer(), SamplingParams(temperature=1.0), pool_slots=slots, eos_ids=())
    root = np.random.default_rng(0).integers(3, _top_id(model.config), size=s.prompt).tolist()
    t = tree_workload(policy, root, depth=depth, children=children, step_tokens=step_tokens)
    return {**dataclasses.asdict(t), "prefilled_over_unique": t.prefilled_tokens / max(t.unique_tokens, 1)}


def ppm_scoring(model: Any, s: Sizes) -> dict[str, Any]:
    ppm = init_model(PPM, model.config, 0)
    scorer = FlaxPPMScorer(ppm, None, pool_slots=s.score_texts * s.score_length + 1, max_rows=s.score_texts)
    rng = np.random.default_rng(1)
    texts = lambda: rng.integers(3, _top_id(model.config), size=(s.score_texts, s.score_length)).tolist()  # noqa: E731
    start = time.perf_counter()
    scorer.score_ids(texts())
    first = time.perf_counter() - start
    scorer.clear_cache()
    start = time.perf_counter()
    scorer.score_ids(texts())
    dt = time.perf_counter() - start
    tokens = s.score_texts * s.score_length
    return {"first_call_s": first, "texts_per_s": s.score_texts / dt, "tokens_per_s": tokens / dt}


def sft_step(config: Any, s: Sizes, peak_tflops: float) -> dict[str, Any]:
    """The train loop's step on one device: compile seconds, steady tokens/s and MFU."""
    cfg = TrainConfig(steps=100, batch_size=s.sft_batch, max_length=s.sft_length, compute_dtype="bfloat16")
    model = build_model(config.replace(param_dtype="float32"))
    graphdef = loop._graphdef(model, "bfloat16")
    tx = loop.make_optimizer(cfg)
    params = nnx.to_pure_dict(nnx.state(model))
    state = loop.TrainState(params, jax.jit(tx.init)(params), jnp.zeros((), jnp.int32))
    schedule = loop.learning_rate_schedule(cfg)
    step = jax.jit(loop._step_fn(graphdef, sft_loss, tx, schedule, jnp.bfloat16), donate_argnums=0)
    B, T = s.sft_batch, s.sft_length
    tokens = np.random.default_rng(2).integers(3, _top_id(config), size=(1, B, T)).astype(np.int32)
    batch = {"tokens": tokens, "mask": np.ones_like(tokens, bool), "loss_mask": np.ones_like(tokens, bool)}
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(3):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    tps = 3 * B * T / (time.perf_counter() - start)
    n = count_params(model)
    return {"compile_s": compile_s, "tokens_per_s": tps, "params": n, "mfu": 6 * n * tps / 1e12 / peak_tflops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU, seconds): checks the script runs")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "device_check.json"))
    ap.add_argument("--peak_bandwidth", type=float, default=3.0e12, help="HBM bytes/s of the roofline (H100: 3.0e12)")
    args = ap.parse_args()
    s = SMOKE if args.smoke else REAL
    dtype = "float32" if args.smoke else "bfloat16"
    res: dict[str, Any] = {"device": f"{jax.devices()[0].device_kind} x{jax.device_count()}", "smoke": args.smoke}

    def record(name: str, value: Any) -> None:
        res[name] = value
        print(name, json.dumps(value), flush=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    record("matmul_tflops", matmul_tflops(s.matmul))
    small = build_model(preset_config(s.small, dtype))
    report = decode_throughput(small, s.batch, s.prompt, s.new_tokens, args.peak_bandwidth)
    record(f"decode_{s.small}", dataclasses.asdict(report))
    record(f"tree_{s.small}", tree_ratio(small, s))
    record(f"ppm_scoring_{s.small}", ppm_scoring(small, s))
    config = small.config
    del small
    record(f"sft_step_{s.small}", sft_step(config, s, res["matmul_tflops"]))
    large = build_model(preset_config(s.large, dtype))
    report = decode_throughput(large, s.batch, s.prompt, s.new_tokens, args.peak_bandwidth)
    record(f"decode_{s.large}" + ("_large" if args.smoke else ""), dataclasses.asdict(report))


if __name__ == "__main__":
    main()
