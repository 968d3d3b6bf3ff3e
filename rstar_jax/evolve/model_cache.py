"""The model cache of a run: search-ready policies and PPMs loaded once and reused across stages and rounds.

    cache = ModelCache(cfg, mesh)                                     # models load sharded on `mesh`
    policy = cache.policy(round_dir.sft / "policy", temperature=0.7)   # a FlaxPolicy, built on first use
    ppm = cache.ppm(round_dir.ppm / "model")                          # a FlaxPPMScorer
    cache.retain([...])                                               # drops the models no later stage needs

- `ModelCache`: search policies (`FlaxPolicy`) and PPM scorers (`FlaxPPMScorer`) built from HF directories, loaded
  once per (directory, temperature), decoder weights shared between temperatures; `model.max_rows` and
  `model.prefill_tokens` bound each call's rows and padded prompt tokens, hence its peak memory, and
  `model.length_buckets` sets how finely prompt lengths are padded.
- `bootstrap_policy`: round 1's policy: the scripted toy teacher (toy, no `model.bootstrap`), an
  OpenAI-compatible endpoint (`model.endpoint`), or an HF checkpoint (`model.bootstrap`, else `model.base`)
  through the cache; `bootstrap_identity` names it for the trees stage's inputs; `bootstrap_prompt` is its
  prompt: the reference's few-shot prompt for a model (`evolve.bootstrap_shots` > 0), else the SFT template.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jax.sharding import Mesh

from rstar_jax import models
from rstar_jax.config import SCRATCH_BASE, RunConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.sampling import CompletionsPolicy, FlaxPolicy, FlaxPPMScorer, SamplingParams
from rstar_jax.search.prompts import FewShotPrompt, Prompter, sft_prompt

__all__ = ["ModelCache", "bootstrap_identity", "bootstrap_policy", "bootstrap_prompt"]


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


def bootstrap_prompt(cfg: RunConfig) -> Prompter:
    """Round 1's prompt builder: the few-shot `FewShotPrompt` when a model (not the toy teacher) is the policy and
    `evolve.bootstrap_shots` > 0, read from `data.reference_dir` (FileNotFoundError / ValueError name the file);
    else the SFT template."""
    m = cfg.model
    if (m.endpoint or m.bootstrap or _given_base(cfg)) and cfg.evolve.bootstrap_shots:
        return FewShotPrompt.load(cfg.data.reference_dir or None, cfg.evolve.bootstrap_shots)
    return sft_prompt


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

    def __init__(self, cfg: RunConfig, mesh: Mesh):
        """`mesh`: where the models' parameters go (sharded by their logical axes); the caller runs the searches
        under `jax.set_mesh(mesh)`, so KV pools and rows follow their logical axes too."""
        self.cfg = cfg
        self.mesh = mesh
        self._policies: dict[tuple[str, float], FlaxPolicy] = {}
        self._ppms: dict[str, FlaxPPMScorer] = {}
        self._decoders: dict[str, tuple[models.Decoder, Any]] = {}

    def _decoder(self, model_dir: Path) -> tuple[models.Decoder, Any]:
        key = str(Path(model_dir).resolve())
        if key not in self._decoders:
            decoder = models.load_decoder(model_dir, dtype=self.cfg.model.dtype, mesh=self.mesh)
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
                length_buckets=self.cfg.model.length_buckets,
            )
        return self._policies[key]

    def ppm(self, model_dir: Path) -> ValueModel:
        """A `FlaxPPMScorer` of the PPM exported in `model_dir`."""
        key = str(Path(model_dir).resolve())
        if key not in self._ppms:
            ppm = models.load_ppm(model_dir, dtype=self.cfg.model.dtype, mesh=self.mesh)
            tokenizer = models.load_tokenizer(model_dir, ppm.config)
            m = self.cfg.model
            self._ppms[key] = FlaxPPMScorer(
                ppm,
                tokenizer,
                pool_slots=m.pool_slots,
                max_rows=m.max_rows,
                prefill_tokens=m.prefill_tokens,
                length_buckets=m.length_buckets,
            )
        return self._ppms[key]

    def retain(self, keep: list[Path]) -> None:
        """Drops every cached model whose directory is not in `keep` (older rounds' models between rounds)."""
        kept = {str(Path(p).resolve()) for p in keep}
        self._policies = {k: v for k, v in self._policies.items() if k[0] in kept}
        self._ppms = {k: v for k, v in self._ppms.items() if k in kept}
        self._decoders = {k: v for k, v in self._decoders.items() if k in kept}
