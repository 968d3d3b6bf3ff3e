"""Issue 7's toy acceptance on CPU: SFT loss falls and held-out greedy accuracy rises above the untrained model;
PPM pair accuracy on held-out pairs. With the toy BPE tokenizer and the tiny Qwen2 policy of `rstar_jax.toy`.

    python benchmarks/bench_train.py                     # the recommended tiny settings (defaults below)
    python benchmarks/bench_train.py --sft_steps=300 --bands=gsm --heads=4 --kv_heads=2

Pipeline: train the BPE on the training split; write a from-scratch policy + tokenizer as an HF directory and load
it back (`load_decoder` / `load_tokenizer`); greedy accuracy of the untrained policy on the test split; SFT with
the project's loop (`rstar_jax.train`) on the canonical full trajectories of the training problems (code steps,
output block, answer step: what the round-1 teacher's correct trajectories look like), held-out loss on the test
problems' canonical trajectories; greedy accuracy again; then the PPM (initialised from the trained policy, fresh
value head) on step pairs extracted (`rstar_jax.extract`) from hand-built trees, held-out pairs from test problems.

Greedy accuracy is the search's `baselines.greedy` (its `sample_trajectories` with one trajectory): the
`FlaxPolicy` at temperature 0 writes one step per call
(stop strings `<end_of_step>` / `<end_of_code>` / `<end_of_answer>`, `max_step_tokens` each), each code step runs
in the sandboxed `Executor` and the `<output>` block is appended by the system, the answer step's `\\boxed{}` is
graded by `ProjectGrader` against the problem's answer.

PPM trees: per problem the intended path (step Q 0.7, correct answer) plus, at a random code step, a wrong sibling
(one operator flipped or one literal changed; Q -0.6) whose continuation reaches a wrong answer; extraction yields
the step pair at the branch and the final-step trajectory pair.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import tempfile
import time
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from rstar_jax.config import SearchConfig, TrainConfig
from rstar_jax.data import Problem
from rstar_jax.execution import Executor
from rstar_jax.extract import extract_round
from rstar_jax.models import PPM, Decoder, count_params, load_decoder, load_tokenizer
from rstar_jax.sampling import FlaxPolicy, SamplingParams
from rstar_jax.search.grader import ProjectGrader, is_correct
from rstar_jax.search.trajectories import sample_trajectories
from rstar_jax.toy import BANDS, ToySpec, generate_toy_splits
from rstar_jax.toy.reading import reading_examples, reading_problems
from rstar_jax.toy.solution import answer_step, code_steps, output_block
from rstar_jax.toy.tiny_model import TINY_DEFAULTS, tiny_model_config, write_tiny_model
from rstar_jax.toy.tokenizer import canonical_response, train_toy_tokenizer
from rstar_jax.train import Examples, bradley_terry_loss, pair_examples, sft_examples, sft_loss, train


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = ap.add_argument
    add("--train_per_band", type=int, default=200, help="configs/tiny.py: 200")
    add("--test_per_band", type=int, default=32)
    add("--bands", default=",".join(BANDS))
    add("--seed", type=int, default=0)
    add("--vocab", type=int, default=768, help="BPE entries incl. 17 specials and 256 bytes")
    add("--read_steps", type=int, default=0, help="reading pretraining steps of the base first (0: none)")
    add("--read_per_band", type=int, default=2000, help="reading documents per band (disjoint problems)")
    add("--read_batch", type=int, default=16)
    add("--read_lr", type=float, default=3e-3)
    add("--read_out", default="", help="save the reading-pretrained base here (HF directory)")
    add("--read_from", default="", help="start from this base (e.g. an earlier --read_out) instead of from scratch")
    add("--copy_steps", type=int, default=0, help="pretrain on a repeat-the-sequence task first (0: no)")
    add("--number_digits", type=int, default=2, help="numbers up to this many digits are one token (1: digits)")
    for name, value in TINY_DEFAULTS.items():
        add(f"--{name}", type=int, default=value)
    add("--max_length", type=int, default=384, help="tokens per training sequence (longer ones are cut)")
    add("--length_window", type=int, default=1, help="micro-batches per length-sorted window (1: plain shuffle)")
    add("--dtype", default="float32", choices=("float32", "bfloat16"))
    add("--sft_steps", type=int, default=300)
    add("--batch", type=int, default=16)
    add("--sft_lr", type=float, default=2e-3)
    add("--warmup", type=int, default=30)
    add("--ppm_steps", type=int, default=150, help="0: skip the PPM")
    add("--ppm_batch", type=int, default=16)
    add("--ppm_lr", type=float, default=1e-3)
    add("--max_step_tokens", type=int, default=96, help="configs/tiny.py: 96")
    add("--max_depth", type=int, default=10, help="configs/tiny.py: 10")
    add("--greedy", type=int, default=1, help="0: skip the greedy accuracy figures")
    add("--out", default="", help="save the trained policy (HF directory) here")
    return ap.parse_args()


def records(problems: list[Problem]) -> list[dict[str, str]]:
    """SFT `{query, response, id}` records: the canonical full trajectory of each problem."""
    return [{"query": p.question, "response": canonical_response(p), "id": p.id} for p in problems]


def greedy_accuracy(
    policy: Decoder, tokenizer: Any, problems: list[Problem], executor: Executor, cfg: SearchConfig
) -> tuple[dict[str, float], str]:
    """Greedy accuracy overall and per band, and the first problem's trajectory (one temperature-0 trajectory per
    problem: what the search's `baselines.greedy` does)."""
    flax_policy = FlaxPolicy(policy, tokenizer, SamplingParams(temperature=0.0), pool_slots=65536)
    grader = ProjectGrader()
    runs = sample_trajectories(problems, 1, cfg=cfg, policy=flax_policy, executor=executor, grader=grader, run_seed=0)
    right = [is_correct(grader, t[0].answer, p.answer) for t, p in zip(runs, problems, strict=True)]
    out = {"all": float(np.mean(right))}
    for band in dict.fromkeys(p.extra["band"] for p in problems):
        out[band] = float(np.mean([r for r, p in zip(right, problems, strict=True) if p.extra["band"] == band]))
    return out, "".join(runs[0][0].texts) + f"\n[answer {runs[0][0].answer!r}, gold {problems[0].answer}]"


def _wrong(step: str, rng: random.Random) -> str:
    """One operator flipped, or one literal changed."""
    line = step.split("\n")[-2]
    for a, b in ((" + ", " - "), (" - ", " + "), (" * ", " + ")):
        if a in line:
            return step.replace(line, line.replace(a, b, 1))
    num = re.findall(r"\d+", line.split("=", 1)[1])[-1]
    return step.replace(line, line[::-1].replace(num[::-1], str(int(num) + rng.randint(1, 9))[::-1], 1)[::-1])


def tree_record(problem: Problem, rng: random.Random) -> dict[str, Any]:
    """Intended path (Q 0.7, correct answer) plus a wrong sibling at a random code step leading to a wrong answer."""
    good = code_steps(problem)
    k = rng.randrange(len(good) - 1)
    answer = str(problem.answer)
    wrong_answer = str(int(answer) + rng.randint(1, 5))
    nodes = {"0": {"text": "", "q_value": 0.0, "terminal_kind": "none", "value": 0.0}}

    def chain(prefix: str, texts: list[str], q: float, ans: str, ok: bool) -> None:
        tag = prefix
        for i, text in enumerate(texts):
            tag = f"{tag}.{1 if ok or i else 2}"
            if i == len(texts) - 1:
                text += output_block(ans)
            nodes[tag] = {"text": text, "q_value": q, "terminal_kind": "none", "value": q}
        nodes[f"{tag}.1"] = {"text": answer_step(ans), "q_value": 1.0 if ok else -1.0, "terminal_kind": "answer",
                             "value": 1.0 if ok else -1.0}  # fmt: skip

    chain("0", good, 0.7, answer, True)
    chain("0" + ".1" * k, [_wrong(good[k], rng), *good[k + 1 :]], -0.6, wrong_answer, False)
    return {"id": problem.id, "question": problem.question, "answer": answer, "rstar": nodes}


def copy_examples(n: int, vocab: int, seed: int, first: int = 17) -> Examples:
    """n sequences `x x` of random non-special tokens x (16-96 long), loss on the second copy: the induction
    pattern (a token, then what followed it earlier) that copying numbers from the question needs."""
    rng = np.random.default_rng(seed)
    tokens, mask, loss = (np.zeros((n, 192), t) for t in (np.int32, bool, bool))
    for i in range(n):
        m = int(rng.integers(16, 97))
        x = rng.integers(first, vocab, m)
        tokens[i, : 2 * m] = np.concatenate([x, x])
        mask[i, : 2 * m] = True
        loss[i, m : 2 * m] = True
    return Examples({"tokens": tokens, "mask": mask, "loss_mask": loss}, tuple(f"copy/{i}" for i in range(n)))


def number_accuracy(policy: Decoder, tokenizer: Any, examples: Examples, batch: int = 16) -> dict[str, float]:
    """Teacher-forced top-1 accuracy on the response tokens of `examples`: all of them; number tokens whose value
    is new to the response (`question`: copied from the question, or computed); number tokens repeating one
    written earlier in the response (`repeat`: e.g. a comment's literal in the code line below it). Step indices
    ("# Step 2") and name suffixes ("nina_2") are not counted as numbers."""
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    is_number = np.array([t.strip().isdigit() for t in texts])
    forward = nnx.jit(lambda m, t, p, k: jnp.argmax(m(t, p, k)[0], axis=-1))
    hits: dict[str, list[bool]] = {"all": [], "question": [], "repeat": []}
    for i in range(0, len(examples), batch):
        tok, mask, loss = (examples.arrays[k][i : i + batch] for k in ("tokens", "mask", "loss_mask"))
        pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        pred = np.asarray(forward(policy, tok, pos, mask))
        for row in range(len(tok)):
            seen: set[int] = set()
            for t in np.flatnonzero(loss[row])[1:]:
                target, right = int(tok[row, t]), bool(pred[row, t - 1] == tok[row, t])
                hits["all"].append(right)
                before = texts[int(tok[row, t - 2])] + texts[int(tok[row, t - 1])]
                if is_number[target] and not before.endswith(("Step ", "_")):
                    hits["repeat" if target in seen else "question"].append(right)
                    seen.add(target)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}


def real_tokens(examples: Examples, key: str = "mask") -> float:
    """Mean real (unpadded) tokens per sequence."""
    return float(examples.arrays[key].sum(1).mean())


def main() -> None:
    args = parse_args()
    logging.set_verbosity(logging.WARNING)
    bands = tuple(args.bands.split(","))
    splits = generate_toy_splits(ToySpec(args.train_per_band, args.test_per_band, seed=args.seed, bands=bands))
    train_p, test_p = splits["train"], splits["test"]
    times: dict[str, float] = {}
    results: dict[str, Any] = {"settings": vars(args)}
    t0 = time.perf_counter()
    tokenizer = train_toy_tokenizer(train_p, args.vocab, number_digits=args.number_digits)
    times["tokenizer"] = time.perf_counter() - t0

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    config = tiny_model_config(len(tokenizer), args.hidden, args.layers, args.heads, args.kv_heads,
                               args.intermediate, args.max_positions)  # fmt: skip
    search_cfg = SearchConfig(max_depth=args.max_depth, max_step_tokens=args.max_step_tokens)
    with Executor(timeout_s=5.0, memory_mb=512, workers=2) as executor, tempfile.TemporaryDirectory() as tmp:
        write_tiny_model(f"{tmp}/policy", tokenizer, config, seed=args.seed)
        start_dir = args.read_from or f"{tmp}/policy"
        policy = load_decoder(start_dir)
        tokenizer = load_tokenizer(start_dir, policy.config)
        results["params"] = count_params(policy)
        fit = sft_examples(records(train_p), encode, tokenizer.eos_token_id, args.max_length)
        held = sft_examples(records(test_p), encode, tokenizer.eos_token_id, args.max_length)
        lengths = fit.arrays["mask"].sum(1)
        results["sft_data"] = {"sequences": len(fit), "mean_tokens": float(lengths.mean()),
                               "max_tokens": int(lengths.max()), "cut": int((lengths == args.max_length).sum()),
                               "response_tokens": real_tokens(fit, "loss_mask")}  # fmt: skip
        if args.greedy:
            t0 = time.perf_counter()
            results["greedy_untrained"], _ = greedy_accuracy(policy, tokenizer, test_p, executor, search_cfg)
            times["greedy_untrained"] = time.perf_counter() - t0
        sft_cfg = TrainConfig(steps=args.sft_steps, batch_size=args.batch, max_length=args.max_length,
                              learning_rate=args.sft_lr, warmup_steps=args.warmup, decay="cosine", weight_decay=0.01,
                              length_window=args.length_window,
                              compute_dtype=args.dtype, save_every=10**6, log_every=10,
                              eval_every=max(args.sft_steps // 3, 1))  # fmt: skip
        t0 = time.perf_counter()
        if args.copy_steps:
            copy_cfg = dataclasses.replace(sft_cfg, steps=args.copy_steps, eval_every=0)
            copies = copy_examples(4096, len(tokenizer), args.seed)
            policy, done = train(policy, sft_loss, copies, cfg=copy_cfg, workdir=f"{tmp}/copy")
            results["copy_loss"] = done["loss"]
        if args.read_steps:
            docs = reading_problems([*train_p, *test_p], args.read_per_band, args.seed, bands)
            reading = reading_examples(docs, encode, tokenizer.eos_token_id, 256)
            read_held = reading_examples(test_p, encode, tokenizer.eos_token_id, 256)
            read_cfg = dataclasses.replace(sft_cfg, steps=args.read_steps, batch_size=args.read_batch,
                                           learning_rate=args.read_lr, max_length=256,
                                           eval_every=max(args.read_steps // 4, 1))  # fmt: skip
            t1 = time.perf_counter()
            policy, done = train(policy, sft_loss, reading, cfg=read_cfg, workdir=f"{tmp}/read",
                                 eval_examples=read_held)  # fmt: skip
            times["read"] = time.perf_counter() - t1
            with open(f"{tmp}/read/metrics.jsonl") as f:
                results["read"] = {"documents": len(reading), "mean_tokens": real_tokens(reading),
                                   "eval_loss": [round(json.loads(x)["eval_loss"], 4) for x in f
                                                 if "eval_loss" in x]}  # fmt: skip
            results["read"]["teacher_forced"] = number_accuracy(policy, tokenizer, read_held)
            print("reading pretraining:", json.dumps(results["read"]), f"{times['read']:.0f} s")
            if args.read_out:
                write_tiny_model(args.read_out, tokenizer, config, seed=args.seed, model=policy)
        t0 = time.perf_counter()
        policy, final = train(policy, sft_loss, fit, cfg=sft_cfg, workdir=f"{tmp}/sft", eval_examples=held)
        times["sft"] = time.perf_counter() - t0
        results["teacher_forced"] = number_accuracy(policy, tokenizer, held)
        if args.out:
            write_tiny_model(args.out, tokenizer, config, seed=args.seed, model=policy)
        with open(f"{tmp}/sft/metrics.jsonl") as f:
            logged = [json.loads(line) for line in f]
        losses = [m["loss"] for m in logged if "loss" in m]
        results["sft"] = {"loss_first_logged": losses[0], "loss_last": final["loss"],
                          "eval_loss": [round(m["eval_loss"], 4) for m in logged if "eval_loss" in m],
                          "tokens_per_s": args.sft_steps * args.batch * real_tokens(fit) / times["sft"],
                          "padded_tokens_per_s":
                              args.sft_steps * args.batch * args.max_length / times["sft"]}  # fmt: skip
        if args.greedy:
            t0 = time.perf_counter()
            results["greedy_trained"], sample = greedy_accuracy(policy, tokenizer, test_p, executor, search_cfg)
            times["greedy_trained"] = time.perf_counter() - t0
            results["greedy_first_problem"] = sample
        if args.ppm_steps:
            results["ppm"], times["ppm"] = train_ppm(args, policy, train_p, test_p, encode, tmp)
    results["seconds"] = times
    report(results)


def train_ppm(args: argparse.Namespace, policy: Decoder, train_p: list[Problem], test_p: list[Problem],
              encode: Any, tmp: str) -> tuple[dict[str, Any], float]:  # fmt: skip
    """PPM from the trained policy on pairs from hand-built trees; held-out pair accuracy. Returns (figures, s)."""
    if True:
        t0 = time.perf_counter()
        rng = random.Random(args.seed)
        fit_pairs = extract_round([tree_record(p, rng) for p in train_p])
        held_pairs = extract_round([tree_record(p, rng) for p in test_p])
        fit_ex, held_ex = (pair_examples(d.pairs, encode, args.max_length) for d in (fit_pairs, held_pairs))
        ppm_cfg = TrainConfig(steps=args.ppm_steps, batch_size=args.ppm_batch, max_length=args.max_length,
                              learning_rate=args.ppm_lr, warmup_steps=10, weight_decay=0.0, compute_dtype=args.dtype,
                              save_every=10**6, log_every=25)  # fmt: skip
        ppm = PPM.from_policy(policy, nnx.Rngs(args.seed + 1))
        _, ppm_final = train(ppm, bradley_terry_loss, fit_ex, cfg=ppm_cfg, workdir=f"{tmp}/ppm", eval_examples=held_ex)
        seconds = time.perf_counter() - t0
        return {"train_pairs": len(fit_ex), "held_out_pairs": len(held_ex),
                "held_out_accuracy": ppm_final["eval_accuracy"], "train_loss_last": ppm_final["loss"],
                "tokens_per_s": args.ppm_steps * args.ppm_batch * 2 * real_tokens(fit_ex, "pos_mask") / seconds,
                }, seconds  # fmt: skip


def report(r: dict[str, Any]) -> None:
    """Console summary, then the whole result as one JSON line."""
    s, sft, t = r["settings"], r["sft"], r["seconds"]
    print(f"\nmodel: {r['params']:,} params (D {s['hidden']}, L {s['layers']}, heads {s['heads']}/{s['kv_heads']}, "
          f"F {s['intermediate']}); BPE vocab {s['vocab']}; dtype {s['dtype']}")  # fmt: skip
    d = r["sft_data"]
    print(f"SFT data: {d['sequences']} sequences, mean {d['mean_tokens']:.0f} tokens "
          f"(response {d['response_tokens']:.0f}), max {d['max_tokens']}, {d['cut']} cut at max_length "
          f"{s['max_length']}")  # fmt: skip
    print(f"SFT: {s['sft_steps']} steps x {s['batch']} seqs, lr {s['sft_lr']}, {t['sft']:.1f} s "
          f"({sft['tokens_per_s']:.0f} real tokens/s, {sft['padded_tokens_per_s']:.0f} padded); loss "
          f"{sft['loss_first_logged']:.3f} (step 10) -> {sft['loss_last']:.3f}; "
          f"held-out loss {sft['eval_loss']}")  # fmt: skip
    tf = r["teacher_forced"]
    print(f"held-out teacher-forced top-1: response tokens {tf['all']:.3f}; numbers new to the response "
          f"{tf['question']:.3f}, numbers repeating one in the response {tf['repeat']:.3f}")  # fmt: skip
    if "greedy_trained" in r:
        for name in ("greedy_untrained", "greedy_trained"):
            accs = ", ".join(f"{k} {v:.3f}" for k, v in r[name].items())
            print(f"{name.replace('_', ' ')} accuracy ({t[name]:.1f} s): {accs}")
        print(f"trained greedy, first test problem:\n{r['greedy_first_problem']}")
    ppm = r.get("ppm")
    if ppm:
        print(f"PPM: {s['ppm_steps']} steps x {s['ppm_batch']} pairs, lr {s['ppm_lr']}, {t['ppm']:.1f} s "
          f"({ppm['tokens_per_s']:.0f} tokens/s); held-out pair accuracy {ppm['held_out_accuracy']:.3f} on "
          f"{ppm['held_out_pairs']} pairs ({ppm['train_pairs']} train pairs)")  # fmt: skip
    print(f"seconds: {json.dumps({k: round(v, 1) for k, v in t.items()})}")
    print("RESULT " + json.dumps(r))


if __name__ == "__main__":
    main()
