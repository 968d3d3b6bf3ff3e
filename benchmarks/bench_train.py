"""Toy-domain acceptance figures for the training loop (CPU-sized): SFT loss and greedy accuracy before /
after, then PPM pair accuracy on held-out pairs extracted from hand-built trees.

    python benchmarks/bench_train.py --sft_steps=300 --ppm_steps=200

Tokens are characters (ASCII, vocab 128); the model is a 2-layer decoder trained from scratch. Greedy
evaluation writes the code steps until `<end_of_code>`, runs them in the project's executor and compares the
printed value with the answer. PPM trees: per problem the intended solution path (step Q +0.7) plus, at a random
step, a wrong sibling (one operator flipped or one literal changed, Q -0.6) that leads to a wrong answer, so
extraction yields step pairs and final-step trajectory pairs; held-out pairs come from test problems only.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rstar_jax.config import TrainConfig
from rstar_jax.execution import Executor, build_program
from rstar_jax.extract import extract_round
from rstar_jax.models import PPM, Decoder, ModelConfig
from rstar_jax.search.steps import build_prompt
from rstar_jax.toy import ToySpec, generate_toy_splits
from rstar_jax.toy.solution import answer_step, code_steps, output_block
from rstar_jax.train import bradley_terry_loss, pair_examples, sft_examples, sft_loss, train

EOS, LENGTH = 3, 704


def encode(text: str) -> list[int]:
    return [min(ord(ch), 127) for ch in text]


def model_config() -> ModelConfig:
    return ModelConfig(
        model_type="qwen2", vocab_size=128, hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4,
        num_kv_heads=2, head_dim=16, rms_norm_eps=1e-6, rope_theta=1e4, max_position_embeddings=LENGTH,
        tie_word_embeddings=True, qkv_bias=True,
    )  # fmt: skip


def greedy_accuracy(model: Decoder, problems: list, executor: Executor, max_new: int = 320) -> tuple[float, str]:
    """Greedy-decode each problem's code (full forward per token, fixed [B, LENGTH] shape), execute, compare.

    Returns (accuracy, the first problem's generated text)."""
    prompts = [encode(build_prompt(p.question, ())) for p in problems]
    tokens = np.zeros((len(prompts), LENGTH), np.int32)
    lengths = np.array([len(p) for p in prompts])
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = p

    @jax.jit
    def next_tokens(tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        mask = jnp.arange(LENGTH)[None, :] < lengths[:, None]
        positions = jnp.broadcast_to(jnp.arange(LENGTH)[None, :], tokens.shape)
        logits, _ = model(tokens, positions, mask)  # [B, T, V]
        return jnp.argmax(jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0], axis=-1)

    texts = [""] * len(prompts)
    done = np.zeros(len(prompts), bool)
    for _ in range(max_new):
        nxt = np.asarray(next_tokens(jnp.asarray(tokens), jnp.asarray(lengths)))
        for i, t in enumerate(nxt):
            if done[i] or lengths[i] >= LENGTH:
                done[i] = True
                continue
            tokens[i, lengths[i]] = t
            lengths[i] += 1
            texts[i] += chr(int(t))
            done[i] |= texts[i].endswith("<end_of_code>") or int(t) == EOS
        if done.all():
            break
    steps = [re.split(r"(?<=<end_of_step>)", t) for t in texts]
    results = executor.run_batch([build_program(s) for s in steps])
    right = [r.ok and r.output.strip() == str(p.answer) for r, p in zip(results, problems, strict=True)]
    return float(np.mean(right)), texts[0]


def _wrong(step: str, rng: random.Random) -> str:
    """One operator flipped, or one literal changed."""
    line = step.split("\n")[-2]
    for a, b in ((" + ", " - "), (" - ", " + "), (" * ", " + ")):
        if a in line:
            return step.replace(line, line.replace(a, b, 1))
    num = re.findall(r"\d+", line.split("=", 1)[1])[-1]
    return step.replace(line, line[::-1].replace(num[::-1], str(int(num) + rng.randint(1, 9))[::-1], 1)[::-1])


def tree_record(problem, rng: random.Random) -> dict:
    """Intended path (Q 0.7, correct answer) plus a wrong sibling at a random code step leading to a wrong answer."""
    good = code_steps(problem)
    k = rng.randrange(len(good) - 1)
    answer = str(problem.answer)
    wrong_answer = str(int(answer) + rng.randint(1, 5)) if answer.lstrip("-").isdigit() else answer + "1"
    nodes = {"0": {"text": "", "q_value": 0.0, "terminal_kind": "none", "value": 0.0}}

    def chain(prefix: str, texts: list[str], q: float, ans: str, ok: bool) -> None:
        tag = prefix
        for i, text in enumerate(texts):
            tag = f"{tag}.{1 if ok or i else 2}"
            last = i == len(texts) - 1
            if last:
                text += output_block(ans)
            nodes[tag] = {"text": text, "q_value": q, "terminal_kind": "none", "value": q}
        nodes[f"{tag}.1"] = {"text": answer_step(ans), "q_value": 1.0 if ok else -1.0, "terminal_kind": "answer",
                             "value": 1.0 if ok else -1.0}  # fmt: skip

    chain("0", good, 0.7, answer, True)
    prefix = "0" + ".1" * k
    chain(prefix, [_wrong(good[k], rng), *good[k + 1 :]], -0.6, wrong_answer, False)
    return {"id": problem.id, "question": problem.question, "answer": answer, "rstar": nodes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train_per_band", type=int, default=400)
    ap.add_argument("--test_per_band", type=int, default=32)
    ap.add_argument("--sft_steps", type=int, default=300)
    ap.add_argument("--ppm_steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--sft_lr", type=float, default=3e-3)
    ap.add_argument("--ppm_lr", type=float, default=1e-3)
    ap.add_argument("--greedy", type=int, default=1, help="0: skip the greedy accuracy figures")
    args = ap.parse_args()
    splits = generate_toy_splits(ToySpec(args.train_per_band, args.test_per_band, seed=0, bands=("gsm",)))
    train_p, test_p = splits["train"], splits["test"]
    records = [
        {"query": p.question, "id": p.id,
         "response": "".join(code_steps(p)) + output_block(str(p.answer)) + answer_step(str(p.answer))}
        for p in train_p
    ]  # fmt: skip
    ex = sft_examples(records, encode, EOS, LENGTH)
    fit, held = ex.split(0.05, seed=0)
    cfg = TrainConfig(steps=args.sft_steps, batch_size=args.batch, max_length=LENGTH, learning_rate=args.sft_lr,
                      warmup_steps=20, decay="cosine", weight_decay=0.01, compute_dtype=args.dtype,
                      save_every=10**6, log_every=25, eval_every=max(args.sft_steps // 3, 1))  # fmt: skip
    policy = Decoder(model_config(), rngs=nnx.Rngs(0))
    with Executor(timeout_s=5.0, workers=2) as executor, tempfile.TemporaryDirectory() as tmp:
        acc0, _ = greedy_accuracy(policy, test_p, executor) if args.greedy else (float("nan"), "")
        t0 = time.perf_counter()
        policy, final = train(policy, sft_loss, fit, cfg=cfg, workdir=f"{tmp}/sft", eval_examples=held)
        sft_s = time.perf_counter() - t0
        with open(f"{tmp}/sft/metrics.jsonl") as f:
            first_loss = json.loads(f.readline())["loss"]
        acc1, sample = greedy_accuracy(policy, test_p, executor) if args.greedy else (float("nan"), "")
        print(
            f"SFT: {args.sft_steps} steps x {args.batch} seqs of {LENGTH} chars in {sft_s:.0f}s; "
            f"train loss {first_loss:.3f} -> {final['loss']:.3f}; held-out loss {final['eval_loss']:.3f}"
        )
        print(f"greedy sample for {test_p[0].question!r} (answer {test_p[0].answer}):\n{sample}")
        print(f"SFT greedy accuracy on {len(test_p)} held-out toy problems: untrained {acc0:.3f} -> trained {acc1:.3f}")
        rng = random.Random(0)
        fit_pairs = extract_round([tree_record(p, rng) for p in train_p])
        held_pairs = extract_round([tree_record(p, rng) for p in test_p])
        print(f"extraction stats (train trees): {json.dumps(fit_pairs.stats)}")
        ppm_cfg = TrainConfig(steps=args.ppm_steps, batch_size=args.batch, max_length=LENGTH, learning_rate=args.ppm_lr,
                              warmup_steps=10, weight_decay=0.0, compute_dtype=args.dtype, save_every=10**6,
                              log_every=25)  # fmt: skip
        ppm = PPM.from_policy(policy, nnx.Rngs(1))
        t0 = time.perf_counter()
        fit_ex, held_ex = (pair_examples(d.pairs, encode, LENGTH) for d in (fit_pairs, held_pairs))
        _, ppm_final = train(ppm, bradley_terry_loss, fit_ex, cfg=ppm_cfg, workdir=f"{tmp}/ppm", eval_examples=held_ex)
        print(
            f"PPM: {args.ppm_steps} steps x {args.batch} pairs in {time.perf_counter() - t0:.0f}s; "
            f"held-out pair accuracy {ppm_final['eval_accuracy']:.3f} on {len(held_pairs.pairs)} pairs "
            f"(train loss {ppm_final['loss']:.3f})"
        )


if __name__ == "__main__":
    main()
