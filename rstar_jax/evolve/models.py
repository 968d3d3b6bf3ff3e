"""The models a round uses: the base checkpoint, the bootstrap policy, and the search-ready policies and PPMs.

- `write_toy_base`: on the toy domain the base model is made here: a BPE tokenizer trained on the training
  split and a tiny decoder initialised from `config.seed`, saved as an HF directory (`model.tiny_*` settings);
  with `model.tiny_read_per_band` > 0 the decoder is first pretrained on reading documents of problems disjoint
  from both splits (`rstar_jax.toy.reading`, section `pretrain`), playing the paper's math-pretrained base.
- `bootstrap_policy`: round 1's policy: the scripted toy teacher (toy, no `model.bootstrap`), an
  OpenAI-compatible endpoint (`model.endpoint`), or an HF checkpoint (`model.bootstrap`, else `model.base`).
- `ModelCache`: search policies (`FlaxPolicy`) and PPM scorers (`FlaxPPMScorer`) built from HF directories,
  loaded once per (directory, temperature) and reused across a round's stages; `model.max_rows` and
  `model.prefill_tokens` bound each call's rows and padded prompt tokens, hence its peak memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rstar_jax import models
from rstar_jax.config import SCRATCH_BASE, RunConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.sampling import CompletionsPolicy, FlaxPolicy, FlaxPPMScorer, SamplingParams

__all__ = ["ModelCache", "bootstrap_policy", "bootstrap_identity", "write_toy_base"]


def write_toy_base(
    cfg: RunConfig, train: Sequence[Problem], test: Sequence[Problem], out_dir: Path, work_dir: Path
) -> tuple[list[Path], dict[str, float]]:
    """Trains the toy BPE tokenizer on `train` and saves it with a tiny decoder, from scratch or reading-pretrained
    (module docstring; the pretraining checkpoints in `work_dir` make a killed run resume). Returns the files and
    the pretraining's final metrics (empty without it)."""
    from rstar_jax.toy.tiny_model import init_tiny_policy, setup_model_config, write_tiny_model
    from rstar_jax.toy.tokenizer import train_toy_tokenizer

    m = cfg.model
    tokenizer = train_toy_tokenizer(train, vocab_size=m.tiny_vocab)
    config = setup_model_config(m, tokenizer)
    model = init_tiny_policy(config, cfg.seed)
    metrics: dict[str, float] = {}
    if m.tiny_read_per_band:
        from rstar_jax.toy.reading import reading_examples, reading_problems
        from rstar_jax.train import sft_loss, split_by_problem
        from rstar_jax.train import train as train_loop

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False)

        bands = tuple(b.value for b in cfg.toy.bands)
        docs = reading_problems([*train, *test], m.tiny_read_per_band, cfg.seed, bands)
        examples = reading_examples(docs, encode, int(tokenizer.eos_token_id), cfg.pretrain.max_length)
        fit_ex, held = split_by_problem(examples, cfg.pretrain.eval_fraction, cfg.pretrain.seed)
        model, metrics = train_loop(
            model, sft_loss, fit_ex, cfg=cfg.pretrain, workdir=work_dir, eval_examples=held, progress=cfg.progress_bars
        )
        metrics["documents"] = float(len(examples))
    write_tiny_model(out_dir, tokenizer, config, seed=cfg.seed, model=model)
    return sorted(p for p in out_dir.iterdir() if p.is_file()), metrics


def _given_base(cfg: RunConfig) -> str:
    """`model.base` when it names an HF directory ('' for the toy's committed or from-scratch base)."""
    return "" if cfg.model.base == SCRATCH_BASE else cfg.model.base


def bootstrap_identity(cfg: RunConfig) -> dict[str, Any]:
    """What round 1's policy is, for the trees stage's inputs."""
    m = cfg.model
    if m.endpoint:
        return {"endpoint": m.endpoint, "model": m.endpoint_model, "temperature": cfg.search.temperature}
    if m.bootstrap or _given_base(cfg):
        checkpoint = Path(m.bootstrap or _given_base(cfg)).resolve()
        return {"checkpoint": str(checkpoint), "temperature": cfg.search.temperature}
    return {"toy_teacher": {k: getattr(cfg.teacher, k) for k in cfg.teacher.__slots__}}


def bootstrap_policy(cfg: RunConfig, train: Sequence[Problem], cache: ModelCache) -> Policy:
    """Round 1's policy (module docstring)."""
    m = cfg.model
    if m.endpoint:
        return CompletionsPolicy(m.endpoint, m.endpoint_model, temperature=cfg.search.temperature)
    if m.bootstrap or _given_base(cfg):
        return cache.policy(Path(m.bootstrap or _given_base(cfg)), cfg.search.temperature)
    from rstar_jax.toy.teacher import ToyTeacher

    t = cfg.teacher
    return ToyTeacher(
        train,
        wrong_operand=t.wrong_operand,
        wrong_operation=t.wrong_operation,
        code_error=t.code_error,
        answer_error=t.answer_error,
    )


class ModelCache:
    """Search-ready models from HF directories, built once each (loading and compiling are the slow part)."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._policies: dict[tuple[str, float], FlaxPolicy] = {}
        self._ppms: dict[str, FlaxPPMScorer] = {}
        self._decoders: dict[str, tuple[models.Decoder, Any]] = {}

    def _decoder(self, model_dir: Path) -> tuple[models.Decoder, Any]:
        key = str(Path(model_dir).resolve())
        if key not in self._decoders:
            decoder = models.load_decoder(model_dir, dtype=self.cfg.model.dtype)
            tokenizer = models.load_tokenizer(model_dir, decoder.config)
            self._decoders[key] = (decoder, tokenizer)
        return self._decoders[key]

    def policy(self, model_dir: Path, temperature: float) -> FlaxPolicy:
        """A `FlaxPolicy` of the HF policy in `model_dir` sampling at `temperature` (0 = greedy)."""
        key = (str(Path(model_dir).resolve()), float(temperature))
        if key not in self._policies:
            decoder, tokenizer = self._decoder(model_dir)
            self._policies[key] = FlaxPolicy(
                decoder,
                tokenizer,
                SamplingParams(temperature=temperature),
                pool_slots=self.cfg.model.pool_slots,
                max_rows=self.cfg.model.max_rows,
                prefill_tokens=self.cfg.model.prefill_tokens,
            )
        return self._policies[key]

    def ppm(self, model_dir: Path) -> ValueModel:
        """A `FlaxPPMScorer` of the PPM exported in `model_dir`."""
        key = str(Path(model_dir).resolve())
        if key not in self._ppms:
            ppm = models.load_ppm(model_dir, dtype=self.cfg.model.dtype)
            tokenizer = models.load_tokenizer(model_dir, ppm.config)
            m = self.cfg.model
            self._ppms[key] = FlaxPPMScorer(
                ppm, tokenizer, pool_slots=m.pool_slots, max_rows=m.max_rows, prefill_tokens=m.prefill_tokens
            )
        return self._ppms[key]

    def retain(self, keep: list[Path]) -> None:
        """Drops every cached model whose directory is not in `keep` (older rounds' models between rounds)."""
        kept = {str(Path(p).resolve()) for p in keep}
        self._policies = {k: v for k, v in self._policies.items() if k[0] in kept}
        self._ppms = {k: v for k, v in self._ppms.items() if k in kept}
        self._decoders = {k: v for k, v in self._decoders.items() if k in kept}
