"""Per-device memory of a run's stages before any weights exist: `launch.plan`'s library.

    plan = memory_plan(cfg, model_config, mesh)   # mesh: fake CPU devices of the real count are enough
    print(format_plan(plan, hbm_gb=80))

Two phases, each the sum of what lives on one device at its peak:

- `sft` / `ppm` training (`rstar_jax.train.loop`): the fp32 master parameters, their compute-dtype copy, fp32
  gradients and the two fp32 AdamW moments (all sharded like the parameters), and the activations of one
  micro-batch (`batch_size` sequences, PPM: pairs = 2 sequences, of `max_length` tokens, rows over data x fsdp).
- `search` (`rstar_jax.sampling`): the parameters in `model.dtype`, the KV pool [L, pool_slots, K, H] (heads over
  tensor), and the prefill / decode temporaries bounded by `sampling.kv_pool`'s bounds.

Where the figures come from (the table's last column says which, line by line): with `compiled=True`
(`launch.plan`'s default) each training phase is XLA's memory analysis of the real jitted train step
(`train.loop.step_memory`: lowered and compiled on abstract values, nothing allocated; `remat` included):
arguments, outputs not aliased to the donated state, temporaries. Where that compile fails, and for the search,
parameters, gradients, moments and the KV pool are an exact count of the buffers:
`nnx.eval_shape` of the model, its `NamedSharding`s from the logical-axis rules on `mesh`, and each buffer's
per-device shard shape (`sharding.shard_shape`). Activations and sampling temporaries are analytical estimates (the
formulas below), not XLA's memory analysis of the compiled steps; they follow the decoder as written: attention
scores are materialised ([B, N, T, T] fp32) and the layer scan saves every layer's residuals unless `train.remat`
recomputes them, so `batch_size` (rows per micro-batch) and `train.remat` are the knobs that trade activations for
`accum_steps` or compute.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from rstar_jax import models
from rstar_jax.config import RunConfig, TrainConfig
from rstar_jax.models import ModelConfig
from rstar_jax.sampling import kv_pool

__all__ = ["ESTIMATE", "EXACT", "XLA", "Line", "Phase", "format_plan", "memory_plan", "sharded_param_bytes"]

GB = 1e9


EXACT, ESTIMATE, XLA = "exact buffers", "estimate", "XLA memory analysis"


@dataclasses.dataclass(frozen=True)
class Line:
    """One buffer class on one device: its bytes and where the figure comes from (`EXACT`, `ESTIMATE`, `XLA`)."""

    name: str
    bytes: int
    source: str


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> int:
        return sum(x.bytes for x in self.lines)


def sharded_param_bytes(config: ModelConfig, mesh: Mesh, dtype: str) -> int:
    """Bytes of the decoder's parameters in `dtype` on the most loaded device of `mesh` (exact)."""
    abstract = models.abstract_decoder(config)
    state = nnx.state(abstract)
    shardings = jax.tree.leaves(models.state_shardings(state, mesh))
    leaves = jax.tree.leaves(state)
    item = np.dtype(config.replace(param_dtype=dtype).dtype).itemsize
    return sum(math.prod(s.shard_shape(x.shape)) * item for x, s in zip(leaves, shardings, strict=True))


def _train_activations(c: ModelConfig, cfg: TrainConfig, mesh: Mesh, pairs: bool) -> int:
    """Estimate of one micro-batch's saved activations on one device.

    r = rows per device (batch_size, x 2 for pairs, over data x fsdp), T = max_length, t = tensor, b = compute
    bytes. Per layer and token: b x (4D + (3NH + 2KH) / t + 4F / t) residuals, projections and MLP, plus the
    attention's fp32 scores and their compute-dtype probabilities N / t x T x (4 + b); then the embeddings
    r T D b and, for the LM loss, three fp32 copies of the logits r T V / t. With `cfg.remat` the layers keep only
    their inputs (b x D per layer and token) plus one layer's worth, recomputed in the backward pass.
    """
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    t = mesh.shape["tensor"]
    r = -(-cfg.batch_size * (2 if pairs else 1) // shards)
    T, b = cfg.max_length, np.dtype(cfg.compute_dtype.value).itemsize
    D, F, N, K, H = c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
    per_token = b * (4 * D + (3 * N * H + 2 * K * H) / t + 4 * F / t) + N / t * T * (4 + b)
    # `train.remat`: the scan keeps only each layer's input [r, T, D]; the backward pass recomputes one layer at a time
    layers = (c.num_layers * b * D + per_token) * r * T if cfg.remat else c.num_layers * r * T * per_token
    logits = 0 if pairs else 3 * r * T * c.vocab_size / t * 4
    return int(layers + r * T * D * b + logits)


def _train_phase(name: str, c: ModelConfig, cfg: TrainConfig, mesh: Mesh, pairs: bool) -> Phase:
    fp32 = sharded_param_bytes(c, mesh, "float32")
    lines = [Line("parameters (fp32 master)", fp32, EXACT)]
    if cfg.compute_dtype.value != "float32":
        lines.append(Line(f"parameters ({cfg.compute_dtype.value} compute copy)", fp32 // 2, EXACT))
    lines += [
        Line("gradients (fp32)", fp32, EXACT),
        Line("optimizer state (AdamW moments, fp32)", 2 * fp32, EXACT),
        Line(f"activations ({cfg.batch_size} x {cfg.max_length} per micro-batch)", 0, ESTIMATE),
    ]
    lines[-1] = dataclasses.replace(lines[-1], bytes=_train_activations(c, cfg, mesh, pairs))
    return Phase(name, tuple(lines))


def _batch_shapes(cfg: TrainConfig, pairs: bool) -> dict[str, jax.ShapeDtypeStruct]:
    """The `[A, B, ...]` shapes and dtypes of one step's batch (`batches.sft_examples` / `pair_examples`)."""
    from rstar_jax.train import pair_examples, sft_examples

    one = {"id": "x", "query": "q", "response": "r", "prompt": "p", "pos": "a", "neg": "b"}
    one |= {"pos_count": 1, "neg_count": 1}
    ex = (
        pair_examples([one], lambda t: [1], cfg.max_length)
        if pairs
        else sft_examples([one], lambda t: [1], 0, cfg.max_length)
    )
    return {
        k: jax.ShapeDtypeStruct((cfg.accum_steps, cfg.batch_size, *v.shape[1:]), v.dtype) for k, v in ex.arrays.items()
    }


def _compiled_train_phase(name: str, c: ModelConfig, cfg: TrainConfig, mesh: Mesh, pairs: bool) -> Phase:
    """The training phase from XLA's memory analysis of the compiled train step (`train.loop.step_memory`)."""
    from rstar_jax.train import bradley_terry_loss, sft_loss
    from rstar_jax.train.loop import step_memory

    model = nnx.eval_shape(lambda: (models.PPM if pairs else models.Decoder)(c, rngs=nnx.Rngs(0)))
    loss = bradley_terry_loss if pairs else sft_loss
    m = step_memory(model, loss, _batch_shapes(cfg, pairs), cfg=cfg, mesh=mesh)
    return Phase(
        name,
        (
            Line("arguments (fp32 parameters, AdamW moments, batch)", m.argument_size_in_bytes, XLA),
            Line("outputs not written over the donated arguments", m.output_size_in_bytes - m.alias_size_in_bytes, XLA),
            Line(
                f"temporaries (gradients, activations of {cfg.batch_size} x {cfg.max_length})",
                m.temp_size_in_bytes,
                XLA,
            ),
        ),
    )


def _search_phase(cfg: RunConfig, c: ModelConfig, mesh: Mesh) -> Phase:
    m, s = cfg.model, cfg.search
    c = c.replace(param_dtype=m.dtype.value)
    item = np.dtype(c.dtype).itemsize
    t, n = mesh.shape["tensor"], mesh.devices.size
    k_local = -(-c.num_kv_heads // t)
    pool = 2 * c.num_layers * m.pool_slots * k_local * c.head_dim * item
    max_len = max(1, c.max_position_embeddings - s.max_step_tokens)
    decode_slots = kv_pool.bucket(max(1, s.max_step_tokens - 1), minimum=1)
    samples = s.samples_per_expansion
    prefill = kv_pool.prefill_bytes_bound(c, m.prefill_tokens, max_len, samples, m.max_rows, decode_slots)
    decode = kv_pool.decode_bytes_bound(c, m.prefill_tokens, max_len, samples, m.max_rows, decode_slots)
    return Phase(
        "search",
        (
            Line(f"parameters ({m.dtype.value})", sharded_param_bytes(c, mesh, m.dtype.value), EXACT),
            Line(f"KV pool ({m.pool_slots} slots)", pool, EXACT),
            Line("prefill / decode temporaries (bound / devices)", max(prefill, decode) // n, ESTIMATE),
        ),
    )


def memory_plan(cfg: RunConfig, c: ModelConfig, mesh: Mesh, compiled: bool = False) -> list[Phase]:
    """The per-device memory of SFT, PPM training and search for `cfg` with the model shape `c` on `mesh`.

    `compiled`: the training phases from XLA's memory analysis of the compiled train step where it compiles (a
    failure is logged and the phase falls back to the buffer count and estimate); else the count and estimate."""
    phases = []
    for name, train_cfg, pairs in (("sft", cfg.sft, False), ("ppm", cfg.ppm, True)):
        phase = None
        if compiled:
            try:
                phase = _compiled_train_phase(name, c, train_cfg, mesh, pairs)
            except Exception as err:  # noqa: BLE001 - whatever stops the compile, the count still answers
                logging.warning(
                    "memory_plan: the %s train step did not compile (%s); using the buffer count", name, err
                )
        phases.append(phase or _train_phase(name, c, train_cfg, mesh, pairs))
    return [*phases, _search_phase(cfg, c, mesh)]


def format_plan(phases: list[Phase], hbm_gb: float, title: str) -> str:
    """A plain-text table: every line in GB per device, each phase's total against `hbm_gb`."""
    out = [title, f"{'per device':<56}{'GB':>9}  source"]
    for p in phases:
        out.append(f"[{p.name}]")
        for x in p.lines:
            out.append(f"  {x.name:<54}{x.bytes / GB:>9.2f}  {x.source}")
        verdict = "fits" if p.total <= hbm_gb * GB else "DOES NOT FIT"
        out.append(f"  {'total':<54}{p.total / GB:>9.2f}  of {hbm_gb:g} GB: {verdict}")
    return "\n".join(out)
