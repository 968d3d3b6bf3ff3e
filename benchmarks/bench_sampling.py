"""Sampling-engine benchmark: decode throughput vs the HBM roofline, compile time, tree-workload prefill.

    python -m benchmarks.bench_sampling --preset=tiny                      # CPU smoke (tiny random model)
    python -m benchmarks.bench_sampling --preset=qwen2.5-math-1.5b --batch=256 --prompt=512 --new_tokens=256 \
        --dtype=bfloat16 --peak_bandwidth=3.0e12 --hf_anchor            # GPU: H100 figures + HF side by side

Prints one line per figure. Weights are random (the figures depend on shapes only).

- `decode_throughput`: B random prompts of P tokens, N sampled tokens each (no stop strings, no EOS): the
  ahead-of-time compile time of its two programs, then the first call (compile included) and a second
  call with fresh prompts; tokens/s and the share of the HBM roofline, where one decode step must read every
  parameter once and the KV cache of the batch:
  `floor = N * (param_bytes + L * B * (P + N / 2) * K * H * 2 * itemsize) / peak_bandwidth` (the formula of
  ../shared/bench/gpu_jax_decode.py, so the figures compare); `--peak_bandwidth` defaults to the 3.0 TB/s
  measured on an H100 (../shared/bench/README.md).
- `tree_workload`: expand a depth-d tree with n children per node, level by level, and compare the tokens
  the engine prefilled with the unique tokens of the tree (the reference re-prefills every path).
- `hf_generate_throughput`: transformers' `generate` on the same shape and random weights (PyTorch, CUDA
  when available), for the side-by-side ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/bench_sampling.py`: make `rstar_jax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from rstar_jax.models import Decoder, ModelConfig, count_params, init_model  # noqa: E402
from rstar_jax.sampling import FlaxPolicy, SamplingParams  # noqa: E402


def preset_config(preset: str, dtype: str) -> ModelConfig:
    """Model shapes: `tiny` (CPU smoke), `qwen2.5-math-1.5b`, `qwen2.5-math-7b` (random weights)."""
    common = dict(
        model_type="qwen2",
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        qkv_bias=True,
        param_dtype=dtype,
        eos_token_id=None,
    )
    if preset == "tiny":
        shape = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
        return ModelConfig(**common, **shape, num_kv_heads=2, head_dim=16, tie_word_embeddings=True)
    if preset == "qwen2.5-math-1.5b":
        shape = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12)
        return ModelConfig(**common, **shape, num_kv_heads=2, head_dim=128, tie_word_embeddings=True)
    if preset == "qwen2.5-math-7b":
        shape = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28)
        return ModelConfig(**common, **shape, num_kv_heads=4, head_dim=128, tie_word_embeddings=False)
    raise ValueError(
        f"bench_sampling.preset_config: unknown preset {preset!r} (tiny, qwen2.5-math-1.5b, qwen2.5-math-7b)"
    )


class IdTokenizer:
    """A stand-in tokenizer for random-weight benchmarks: ids are their own text (`"17 4 "`)."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(f"{i} " for i in ids)


@dataclasses.dataclass
class ThroughputReport:
    batch: int
    prompt: int
    new_tokens: int
    first_call_s: float
    compile_prefill_s: float
    compile_chunk_s: float
    steady_s: float
    tokens_per_s: float
    roofline_floor_s: float
    roofline_share: float
    param_bytes: int
    kv_bytes_per_step: float


def param_bytes(model: Decoder) -> int:
    """Bytes of the parameters one decode step reads (a tied head is counted once)."""
    return count_params(model) * np.dtype(model.config.dtype).itemsize


def decode_throughput(
    model: Decoder, batch: int, prompt: int, new_tokens: int, peak_bandwidth: float, seed: int = 0
) -> ThroughputReport:
    """Time `FlaxPolicy` on B random prompts of P tokens with N new tokens each (temperature 0.7)."""
    c = model.config
    policy = FlaxPolicy(
        model, IdTokenizer(), SamplingParams(temperature=0.7), pool_slots=batch * prompt + 1, max_rows=batch, eos_ids=()
    )
    rng = np.random.default_rng(seed)
    shape_only = [[3] * prompt] * batch
    compile_prefill, compile_chunk = policy.compile_seconds(shape_only, 1, new_tokens)
    times = []
    for call in range(2):
        prompts = rng.integers(3, min(c.vocab_size, 150000), size=(batch, prompt)).tolist()
        policy.clear_cache()  # fresh prompts: no cache hits across calls
        start = time.perf_counter()
        out = policy.generate_ids(prompts, 1, new_tokens, list(range(call * batch, (call + 1) * batch)))
        times.append(time.perf_counter() - start)
        assert all(len(r[0]) == new_tokens for r in out), "bench_sampling: a row stopped early"
    itemsize = np.dtype(c.dtype).itemsize
    kv = c.num_layers * batch * (prompt + new_tokens / 2) * c.num_kv_heads * c.head_dim * 2 * itemsize
    pbytes = param_bytes(model)
    floor = new_tokens * (pbytes + kv) / peak_bandwidth
    return ThroughputReport(
        batch=batch,
        prompt=prompt,
        new_tokens=new_tokens,
        first_call_s=times[0],
        compile_prefill_s=compile_prefill,
        compile_chunk_s=compile_chunk,
        steady_s=times[1],
        tokens_per_s=batch * new_tokens / times[1],
        roofline_floor_s=floor,
        roofline_share=floor / times[1],
        param_bytes=pbytes,
        kv_bytes_per_step=kv,
    )


@dataclasses.dataclass
class TreeReport:
    depth: int
    children: int
    prompts_expanded: int
    unique_tokens: int
    prefilled_tokens: int
    reprefill_tokens: int
    hit_rate: float
    pool_slots_used: int
    pool_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Prefilled / unique tokens (1.0 = every tree token computed once)."""
        return self.prefilled_tokens / self.unique_tokens


def count_unique_tokens(prompts: list[list[int]]) -> int:
    """Distinct token prefixes over `prompts` (the nodes of their token trie)."""
    root: dict[int, Any] = {}
    count = 0
    for p in prompts:
        node = root
        for tok in p:
            if tok not in node:
                node[tok] = {}
                count += 1
            node = node[tok]
    return count


def tree_workload(policy: FlaxPolicy, root: list[int], depth: int, children: int, step_tokens: int) -> TreeReport:
    """Expand the root, then every child, `depth` levels deep (each level in one `generate_ids` call).

    A child's prompt is its parent's prompt plus the sampled step, as in the search. `reprefill_tokens` is
    what re-prefilling every expanded prompt from scratch (the reference) would cost.
    """
    before = dataclasses.replace(policy.cache.stats)
    frontier, expanded = [list(root)], []
    start = time.perf_counter()
    for level in range(depth):
        seeds = [level * 1_000_003 + i for i in range(len(frontier))]
        samples = policy.generate_ids(frontier, children, step_tokens, seeds)
        expanded.extend(frontier)
        frontier = [p + s for p, row in zip(frontier, samples, strict=True) for s in row]
    seconds = time.perf_counter() - start
    stats = policy.cache.stats
    looked_up = stats.prompt_tokens - before.prompt_tokens
    return TreeReport(
        depth=depth,
        children=children,
        prompts_expanded=len(expanded),
        unique_tokens=count_unique_tokens(expanded),
        prefilled_tokens=stats.prefilled_tokens - before.prefilled_tokens,
        reprefill_tokens=sum(len(p) for p in expanded),
        hit_rate=(stats.hit_tokens - before.hit_tokens) / max(looked_up, 1),
        pool_slots_used=policy.cache.used_slots,
        pool_bytes=policy.pool.nbytes,
        seconds=seconds,
    )


def hf_generate_throughput(config: ModelConfig, batch: int, prompt: int, new_tokens: int) -> tuple[float, str]:
    """transformers `generate` tokens/s on the same shape with random weights; returns (tokens/s, device)."""
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    hf_config = transformers.Qwen2Config(**{k: v for k, v in config.to_hf_dict().items() if k != "dtype"})
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.param_dtype, torch.float32)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.Qwen2ForCausalLM(hf_config).to(dtype).eval()
    ids = torch.randint(3, min(config.vocab_size, 150000), (batch, prompt), device=device)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=0.7, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids[:, : min(prompt, 64)], max_new_tokens=4, do_sample=True, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del model, ids
    if device == "cuda":
        torch.cuda.empty_cache()  # hand the memory back before JAX allocates
    return batch * new_tokens / seconds, device


def build_model(config: ModelConfig, seed: int = 0) -> Decoder:
    """A random-weight decoder of `config` on the default device."""
    return init_model(Decoder, config, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "qwen2.5-math-1.5b", "qwen2.5-math-7b"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: float32 tiny, bfloat16 else")
    parser.add_argument("--batch", type=int, help="prompts decoded together (default: 8 tiny, 256 else)")
    parser.add_argument("--prompt", type=int, help="prompt tokens (default: 32 tiny, 512 else)")
    parser.add_argument("--new_tokens", type=int, help="sampled tokens per prompt (default: 32 tiny, 256 else)")
    parser.add_argument("--peak_bandwidth", type=float, default=3.0e12, help="peak HBM bytes/s for the roofline")
    parser.add_argument("--tree", action=argparse.BooleanOptionalAction, default=True, help="depth 4, n = 8")
    parser.add_argument("--tree_step_tokens", type=int, default=8, help="tokens per step in the tree workload")
    parser.add_argument("--hf_anchor", action="store_true", help="also time transformers' generate (CUDA if any)")
    args = parser.parse_args(argv)
    tiny = args.preset == "tiny"
    dtype = args.dtype or ("float32" if tiny else "bfloat16")
    batch = args.batch or (8 if tiny else 256)
    prompt = args.prompt or (32 if tiny else 512)
    new = args.new_tokens or (32 if tiny else 256)
    config = preset_config(args.preset, dtype)
    hf_tps = None
    if args.hf_anchor:  # first, before JAX takes most of the accelerator's memory
        hf_tps, hf_device = hf_generate_throughput(config, batch, prompt, new)
        print(f"HF generate ({hf_device}) B={batch} prompt={prompt} new={new}: {hf_tps:,.0f} tokens/s")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  preset: {args.preset} {dtype}")
    model = build_model(config)
    print(f"params: {param_bytes(model) / 1e9:.3f} GB")
    r = decode_throughput(model, batch, prompt, new, args.peak_bandwidth)
    print(
        f"decode B={batch} prompt={prompt} new={new}: {r.tokens_per_s:,.0f} tokens/s (steady call {r.steady_s:.3f} s)"
    )
    print(
        f"compile (ahead of time): prefill {r.compile_prefill_s:.2f} s + decode chunk {r.compile_chunk_s:.2f} s; "
        f"first call {r.first_call_s:.2f} s"
    )
    print(
        f"HBM roofline: floor {r.roofline_floor_s:.3f} s at {args.peak_bandwidth:.2e} B/s "
        f"(params {r.param_bytes / 1e9:.3f} GB + KV {r.kv_bytes_per_step / 1e9:.3f} GB per step) "
        f"-> share {100 * r.roofline_share:.1f} %"
    )
    if hf_tps is not None:
        print(f"rstar_jax / HF generate = {r.tokens_per_s / hf_tps:.1f}x (same shape, same process)")
    if args.tree:
        policy = FlaxPolicy(model, IdTokenizer(), SamplingParams(temperature=1.0), pool_slots=1 << 16, eos_ids=())
        t = tree_workload(policy, list(range(3, 3 + prompt)), 4, 8, args.tree_step_tokens)
        print(
            f"tree depth {t.depth} n={t.children}: {t.prompts_expanded} prompts expanded in {t.seconds:.2f} s; "
            f"prefilled {t.prefilled_tokens} / unique {t.unique_tokens} tokens = {t.ratio:.3f}x "
            f"(re-prefill would be {t.reprefill_tokens / t.unique_tokens:.2f}x); hit rate {100 * t.hit_rate:.1f} %"
        )
        print(f"prefix pool: {t.pool_slots_used} slots used, {t.pool_bytes / 1e6:.1f} MB")
        print(f"tree report: {dataclasses.asdict(t)}")


if __name__ == "__main__":
    main()
