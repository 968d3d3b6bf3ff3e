"""Sampling-engine benchmark: decode throughput vs the HBM roofline, compile time, tree-workload prefill.

    python -m launch.bench_sampling --preset=tiny                          # CPU smoke (tiny random model)
    python -m launch.bench_sampling --preset=qwen2.5-math-1.5b --batch=256 --prompt=512 --new_tokens=256 \
        --dtype=bfloat16 --peak_bandwidth=3.0e12 --hf_anchor                # GPU: H100 figures + HF side by side

Prints one line per figure. Weights are random (the figures depend on shapes only). The roofline share is
(params bytes + KV bytes per step) x steps / peak bandwidth over the measured time; `--peak_bandwidth`
defaults to the 3.0 TB/s measured on an H100 (../shared/bench/README.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
from absl import app, flags

from rstar_jax.sampling import FlaxPolicy, SamplingParams, bench

_PRESET = flags.DEFINE_enum("preset", "tiny", ["tiny", "qwen2.5-math-1.5b", "qwen2.5-math-7b"], "Model shape.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "Weights dtype (default: fp32 tiny, bf16 else).")
_BATCH = flags.DEFINE_integer("batch", None, "Prompts decoded together (default: 8 tiny, 256 else).")
_PROMPT = flags.DEFINE_integer("prompt", None, "Prompt tokens (default: 32 tiny, 512 else).")
_NEW = flags.DEFINE_integer("new_tokens", None, "Sampled tokens per prompt (default: 32 tiny, 256 else).")
_PEAK = flags.DEFINE_float("peak_bandwidth", 3.0e12, "Peak HBM bandwidth in bytes/s for the roofline share.")
_TREE = flags.DEFINE_bool("tree", True, "Also run the tree workload (depth 4, n = 8).")
_TREE_STEP = flags.DEFINE_integer("tree_step_tokens", 8, "Tokens per sampled step in the tree workload.")
_HF = flags.DEFINE_bool("hf_anchor", False, "Also time transformers' generate on the same shape (CUDA if any).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    tiny = _PRESET.value == "tiny"
    dtype = _DTYPE.value or ("float32" if tiny else "bfloat16")
    batch = _BATCH.value or (8 if tiny else 256)
    prompt = _PROMPT.value or (32 if tiny else 512)
    new = _NEW.value or (32 if tiny else 256)
    config = bench.preset_config(_PRESET.value, dtype)
    hf_tps = None
    if _HF.value:  # first, before JAX takes most of the accelerator's memory
        hf_tps, hf_device = bench.hf_generate_throughput(config, batch, prompt, new)
        print(f"HF generate ({hf_device}) B={batch} prompt={prompt} new={new}: {hf_tps:,.0f} tokens/s")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  preset: {_PRESET.value} {dtype}")
    model = bench.build_model(config)
    print(f"params: {bench.param_bytes(model) / 1e9:.3f} GB")
    r = bench.decode_throughput(model, batch, prompt, new, _PEAK.value)
    print(
        f"decode B={batch} prompt={prompt} new={new}: {r.tokens_per_s:,.0f} tokens/s (steady call {r.steady_s:.3f} s)"
    )
    print(
        f"compile (ahead of time): prefill {r.compile_prefill_s:.2f} s + decode chunk {r.compile_chunk_s:.2f} s; "
        f"first call {r.first_call_s:.2f} s"
    )
    print(
        f"HBM roofline: floor {r.roofline_floor_s:.3f} s at {_PEAK.value:.2e} B/s "
        f"(params {r.param_bytes / 1e9:.3f} GB + KV {r.kv_bytes_per_step / 1e9:.3f} GB per step) "
        f"-> share {100 * r.roofline_share:.1f} %"
    )
    if hf_tps is not None:
        print(f"rstar_jax / HF generate = {r.tokens_per_s / hf_tps:.1f}x (same shape, same process)")
    if _TREE.value:
        policy = FlaxPolicy(model, bench.IdTokenizer(), SamplingParams(temperature=1.0), pool_slots=1 << 16, eos_ids=())
        t = bench.tree_workload(policy, list(range(3, 3 + prompt)), 4, 8, _TREE_STEP.value)
        print(
            f"tree depth {t.depth} n={t.children}: {t.prompts_expanded} prompts expanded in {t.seconds:.2f} s; "
            f"prefilled {t.prefilled_tokens} / unique {t.unique_tokens} tokens = {t.ratio:.3f}x "
            f"(re-prefill would be {t.reprefill_tokens / t.unique_tokens:.2f}x); hit rate {100 * t.hit_rate:.1f} %"
        )
        print(f"prefix pool: {t.pool_slots_used} slots used, {t.pool_bytes / 1e6:.1f} MB")
        print(f"tree report: {dataclasses.asdict(t)}")


if __name__ == "__main__":
    app.run(main)
