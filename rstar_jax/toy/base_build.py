"""Builds the committed toy base: corpus, tokenizer, resumable pretraining, held-out metrics, HF export + manifest.

    manifest = build_base(cfg)          # what `python -m launch.pretrain --config=configs/toy_base.py` runs

Stages, all under `cfg.workdir` (a rerun resumes; the orbax checkpoints are in `<workdir>/train/checkpoints`):
1. the corpus (`base_corpus.corpus_problems`, `toy_base.corpus_per_band` per band) and, after it in the same
   split, `toy_base.held_out_per_band` held-out problems per band that are never trained on;
2. the toy BPE tokenizer (`toy_model.vocab`) trained on the first `toy_base.tokenizer_per_band` corpus problems
   of each band, and a tiny decoder of the `toy_model` shape initialised from `cfg.seed`;
3. language-model pretraining on every token of every document (`base_corpus.corpus_document`) with the shared
   loop (`rstar_jax.train.train`, section `pretrain`). With `toy_base.minutes` > 0 the piece stops after that
   much training, checkpointed, and the export below is of the step reached: the next run continues from it;
4. held-out metrics: the language-model loss on the held-out documents, and greedy pass@1 on the held-out
   problems (step-by-step, code run in the sandboxed executor, answers graded), per band;
5. the export to `toy_base.out` (default the package's `rstar_jax/toy/base`): config.json, model.safetensors,
   tokenizer files, the corpus's question hashes (`corpus_questions.npy`, which every toy split excludes) and
   `manifest.json`: the config, seeds, the corpus fingerprint, steps done of planned, wall time summed over the
   pieces, the machines, the metrics and the sha256 of every file. The directory is replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax.config import RunConfig, to_dict
from rstar_jax.data import Problem
from rstar_jax.toy import base_corpus
from rstar_jax.toy.generator import BANDS
from rstar_jax.workdir import check_output_dir

__all__ = ["MANIFEST", "build_base", "check_base", "greedy_accuracy"]

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_base(base_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an exported base, after checking every listed file's sha256; raises ValueError naming
    the first file that is missing or differs."""
    base = Path(base_dir)
    path = base / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path}: no manifest (build the base with `python -m launch.pretrain`)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name, digest in manifest["sha256"].items():
        file = base / name
        if not file.is_file():
            raise ValueError(f"{file}: listed in {path} but missing")
        if _sha256(file) != digest:
            raise ValueError(f"{file}: sha256 differs from {path}")
    return manifest


def _split(cfg: RunConfig) -> tuple[list[Problem], list[Problem]]:
    """(corpus, held-out) problems of the base split, band by band."""
    tb = cfg.toy_base
    corpus, held = [], []
    for band in BANDS:
        drawn = base_corpus.corpus_problems(tb.corpus_per_band + tb.held_out_per_band, tb.corpus_seed, (band,))
        corpus.extend(drawn[: tb.corpus_per_band])
        held.extend(drawn[tb.corpus_per_band :])
    return corpus, held


def _examples(problems: Sequence[Problem], tokenizer: Any, max_length: int) -> Any:
    from rstar_jax.train.batches import document_examples

    texts = [base_corpus.corpus_document(p) for p in problems]
    token_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # one batched (Rust) call
    return document_examples(token_ids, [p.id for p in problems], int(tokenizer.eos_token_id), max_length)


def greedy_accuracy(cfg: RunConfig, model: Any, tokenizer: Any, problems: Sequence[Problem]) -> dict[str, float]:
    """Greedy pass@1 of `model` on `problems`, overall and per band (`greedy_<band>`), as the evaluation runs it."""
    from rstar_jax.execution import Executor
    from rstar_jax.sampling import FlaxPolicy, SamplingParams
    from rstar_jax.search import ProjectGrader, is_correct, sample_trajectories

    if not problems:
        return {}
    m, ex = cfg.model, cfg.execution
    policy = FlaxPolicy(
        model,
        tokenizer,
        SamplingParams(temperature=0.0),
        pool_slots=m.pool_slots,
        max_rows=m.max_rows,
        prefill_tokens=m.prefill_tokens,
        length_buckets=m.length_buckets,
    )
    grader = ProjectGrader(cfg.grading.timeout_s, cfg.grading.percent_as_fraction)
    with Executor(timeout_s=ex.timeout_s, memory_mb=ex.memory_mb, workers=ex.workers or None) as executor:
        runs = sample_trajectories(
            problems, 1, cfg=cfg.search, policy=policy, executor=executor, grader=grader, run_seed=cfg.seed
        )
    ok = [is_correct(grader, t[0].answer, p.answer) for p, t in zip(problems, runs, strict=True)]
    out = {"greedy": sum(ok) / len(ok)}
    for band in BANDS:
        sel = [o for p, o in zip(problems, ok, strict=True) if p.extra.get("band") == band]
        if sel:
            out[f"greedy_{band}"] = sum(sel) / len(sel)
    return out


def _machine() -> dict[str, Any]:
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
    }


def _pieces(workdir: Path, piece: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The build's pieces so far (`<workdir>/pieces.jsonl`), with `piece` appended when given."""
    path = workdir / "pieces.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    pieces = [json.loads(line) for line in lines if line.strip()]
    if piece is not None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(piece) + "\n")
        pieces.append(piece)
    return pieces


def _export(out: Path, model: Any, tokenizer: Any, config: Any, cfg: RunConfig, questions: Any, info: dict) -> None:
    from rstar_jax.toy.tiny_model import write_tiny_model

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_tiny_model(tmp, tokenizer, config, seed=cfg.seed, model=model)
    questions.save(tmp / base_corpus.QUESTIONS_FILE)
    files = sorted(p.name for p in tmp.iterdir() if p.is_file())
    manifest = {**info, "sha256": {name: _sha256(tmp / name) for name in files}}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export_dir(cfg: RunConfig) -> Path:
    """Where the base is exported (`toy_base.out`, default the package's base), checked to be a directory or absent
    with a writable parent: `NotADirectoryError` / `PermissionError` naming the key otherwise."""
    out = Path(cfg.toy_base.out).expanduser() if cfg.toy_base.out else base_corpus.BASE_DIR
    return check_output_dir(out, f"config.toy_base.out = {cfg.toy_base.out!r}")


def build_base(cfg: RunConfig, *, progress: bool | None = None) -> dict[str, Any]:
    """Runs (or resumes) the build of the module docstring; returns the exported manifest."""
    from rstar_jax.toy.tiny_model import init_tiny_policy, setup_model_config
    from rstar_jax.toy.tokenizer import train_toy_tokenizer
    from rstar_jax.train import sft_loss
    from rstar_jax.train import train as train_loop

    workdir = Path(cfg.workdir).expanduser().resolve()
    tb, m = cfg.toy_base, cfg.toy_model
    out = export_dir(cfg)  # a file there, or an unwritable place, is refused before any work
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    corpus, held = _split(cfg)
    questions = base_corpus.QuestionSet.from_problems([*corpus, *held])
    per_band = min(tb.tokenizer_per_band, tb.corpus_per_band)
    tok_problems = [p for i, p in enumerate(corpus) if i % tb.corpus_per_band < per_band]
    tokenizer = train_toy_tokenizer(tok_problems, vocab_size=m.vocab)
    config = setup_model_config(m, tokenizer)
    examples = _examples(corpus, tokenizer, cfg.pretrain.max_length)
    held_examples = _examples(held, tokenizer, cfg.pretrain.max_length) if held else None
    logging.info("toy base: %d corpus and %d held-out problems, vocab %d", len(corpus), len(held), len(tokenizer))
    train_start = time.monotonic()
    deadline = train_start + 60.0 * tb.minutes if tb.minutes else None
    show = cfg.progress_bars if progress is None else progress
    model, metrics = train_loop(
        init_tiny_policy(config, cfg.seed),
        sft_loss,
        examples,
        cfg=cfg.pretrain,
        workdir=workdir / "train",
        eval_examples=held_examples,
        progress=show,
        deadline=deadline,
    )
    step = _latest_step(workdir / "train")
    metrics |= greedy_accuracy(cfg, model, tokenizer, held)
    piece = {"step": step, "seconds": round(time.monotonic() - started, 1), "machine": _machine()}
    pieces = _pieces(workdir, piece)
    info = {
        "config": {
            "toy_base": to_dict(tb),
            "toy_model": to_dict(m),
            "pretrain": to_dict(cfg.pretrain),
        },
        "seeds": {"init": cfg.seed, "corpus": tb.corpus_seed, "data_order": cfg.pretrain.seed},
        "corpus": {
            "split": base_corpus.BASE_SPLIT,
            "problems": len(corpus),
            "held_out_problems": len(held),
            "questions_sha256": questions.fingerprint(),
            "documents_sha256": hashlib.sha256(examples.arrays["tokens"].tobytes()).hexdigest(),
        },
        "steps": {"done": step, "planned": cfg.pretrain.steps},
        "wall_seconds": round(sum(p["seconds"] for p in pieces), 1),
        "pieces": pieces,
        "metrics": {k: round(float(v), 5) for k, v in metrics.items()},
    }
    _export(out, model, tokenizer, config, cfg, questions, info)
    logging.info("toy base: exported step %d of %d to %s: %s", step, cfg.pretrain.steps, out, info["metrics"])
    return check_base(out)


def _latest_step(train_dir: Path) -> int:
    from rstar_jax.checkpoint import Checkpointer

    with Checkpointer(train_dir / "checkpoints") as ckpt:
        return int(ckpt.latest_step() or 0)
