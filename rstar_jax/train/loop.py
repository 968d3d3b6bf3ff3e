"""The one training loop shared by SFT, PPM, ORM and PQM: optax AdamW, a jitted sharded step, orbax resume.

    module, summary = train(model, sft_loss, examples, cfg=run.train, workdir="round1/sft", mesh=mesh)

State = fp32 master params (a pure dict) + optax state + step. One optimizer step scans over `accum_steps`
micro-batches (`[A, B, ...]` arrays) summing gradients, averages them, clips the global norm and applies AdamW
with warmup then linear or cosine decay. The step is `jax.jit`-ed with the state donated and explicit in/out
shardings from the model's logical axes (`models/sharding.py`) on `mesh`, called under `jax.set_mesh(mesh)`;
the loss runs on a copy of the params cast to `cfg.compute_dtype` (bf16 by default). Each step's (and each eval
batch's) `[A, B, T]` arrays are cut to their longest real sequence rounded up to `length_bucket` tokens
(`batches.trim_padding`) and handed to the devices (`_global_batch`: each process its own rows, through
`jax.make_array_from_process_local_data`), so no step computes on more than a bucket of padding; the one
jitted step compiles once per distinct length.

Step metrics stay on the device until a log, eval or save point (every `log_every` / `eval_every` / `save_every`
steps and the last), where they reach the host together. A non-finite loss or gradient norm there raises
`NonFiniteError` with the step number and the batch's problem ids before anything is saved. Checkpoints
(`rstar_jax.checkpoint.Checkpointer` under `<workdir>/checkpoints`) hold params, opt_state, `extra = {"step",
"micro_batches"}` and the config (the model's, and the `TrainConfig` as `train`); a rerun restores the latest one and
continues at exactly that step and data position (micro-batch k of the stream depends only on (seed, k)), so an
interrupted run ends with the same parameters as an uninterrupted one. A rerun whose `TrainConfig` differs in
anything but `RESUMABLE` (steps, epochs, remat) is refused naming the keys (`CheckpointMismatchError`). On
preemption (orbax's `reached_preemption`, agreed by every process) the step reached is saved and `Preempted` raised:
the command exits cleanly and the same command resumes. Metrics (loss, gradient norm, learning rate, the loss's own
metrics such as the PPM's pair accuracy, and `eval_*` at eval points) go to the progress bar, the log file (and the
console when the bar is off), `<workdir>/metrics.jsonl` and a TensorBoard event file in `<workdir>`, which also
gets `tokens_per_s`: real (not padding) tokens per second over the steps since the previous log point, compilation
included (`metrics_log.MetricsLog`). A resumed run first cuts both logs back to its checkpoint's step, so no step is
logged twice. The final evaluation is part of the last step's record.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rstar_jax.checkpoint import Checkpointer, CheckpointMismatchError
from rstar_jax.config import TrainConfig, to_dict
from rstar_jax.models import MeshConfig, logical_to_spec, make_mesh, state_shardings
from rstar_jax.progress import Progress
from rstar_jax.train.batches import Examples, real_tokens, trim_padding
from rstar_jax.train.export import checkpoint_config
from rstar_jax.train.metrics_log import MetricsLog

__all__ = [
    "RESUMABLE",
    "TRAIN_KEY",
    "LossFn",
    "NonFiniteError",
    "TrainState",
    "learning_rate_schedule",
    "make_optimizer",
    "resume_settings",
    "train",
]

LossFn = Callable[[Any, dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient."""


class Preempted(RuntimeError):
    """The job is being preempted: the step reached is saved and training stopped; the same command resumes."""


class TrainState(NamedTuple):
    """params: pure dict of fp32 arrays; opt_state: optax state; step: [] int32."""

    params: Any
    opt_state: Any
    step: jax.Array


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup over `cfg.warmup_steps`, then linear or cosine decay to 0 at `cfg.steps`."""
    decay_steps = max(cfg.steps - cfg.warmup_steps, 1)
    if cfg.decay == "linear":
        decay = optax.linear_schedule(cfg.learning_rate, 0.0, decay_steps)
    elif cfg.decay == "cosine":
        decay = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps)
    else:
        raise ValueError(f"rstar_jax/train/loop.py: config.train.decay={cfg.decay!r}; use 'linear' or 'cosine'")
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps]) if cfg.warmup_steps else decay


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW (decoupled weight decay) on `learning_rate_schedule(cfg)`."""
    schedule = learning_rate_schedule(cfg)
    clip = optax.clip_by_global_norm(cfg.max_grad_norm) if cfg.max_grad_norm > 0 else optax.identity()
    return optax.chain(clip, optax.adamw(schedule, weight_decay=cfg.weight_decay))


TRAIN_KEY = "train"  # the checkpoint config entry: the `TrainConfig` a resume must share (`resume_settings`)
RESUMABLE = ("steps", "epochs", "remat")
"""`TrainConfig` keys a resume may change: how long to train (more steps continue a finished run, the schedule
re-stretched to the new end) and `remat` (the same values, recomputed). Any other difference refuses the resume."""


def resume_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings recorded with each checkpoint that a resume must share: `cfg` but `RESUMABLE`, as JSON data."""
    return json.loads(json.dumps({k: v for k, v in to_dict(cfg).items() if k not in RESUMABLE}))


def _check_resume(stored: dict[str, Any] | None, settings: dict[str, Any], where: str) -> None:
    """Raises `CheckpointMismatchError` naming each key whose value differs from the checkpoint's (a checkpoint from
    before the settings were recorded resumes unchecked)."""
    old = (stored or {}).get(TRAIN_KEY)
    if old is None:
        return
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
    if changed:
        raise CheckpointMismatchError(
            f"{where} was trained with other settings ({'; '.join(changed)}); a rerun resumes only with the same "
            f"ones (only {', '.join(RESUMABLE)} may change): set them back, or use a new workdir"
        )


def _graphdef(model: nnx.Module, dtype: str, remat: bool = False) -> Any:
    """The graph of `model` rebuilt with `param_dtype=dtype` (activations follow the params' dtype) and `remat`."""
    cls, config = type(model), model.config.replace(param_dtype=dtype, remat=remat)
    return nnx.graphdef(nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0))))


def _batch_shardings(arrays: dict[str, np.ndarray], mesh: Mesh) -> dict[str, NamedSharding]:
    """Shardings of `[A, B, ...]` batch arrays: B over the mesh axes of `act_batch` (data x fsdp), everything
    else replicated. Raises ValueError, naming the array, when those axes do not divide B (`cfg.batch_size` must
    be a multiple of data x fsdp): a batch is never silently replicated."""
    return {
        k: NamedSharding(
            mesh, logical_to_spec((None, "act_batch") + (None,) * (v.ndim - 2), v.shape, mesh, f"batch array {k!r}")
        )
        for k, v in arrays.items()
    }


def _global_batch(arrays: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """The global `[A, B, ...]` batch arrays on `mesh`, each process handing over only the rows its own devices
    hold (`jax.make_array_from_process_local_data`); the batch is the same pure function of the step on every
    process, and one process simply hands over every row."""
    out = {}
    for k, sharding in _batch_shardings(arrays, mesh).items():
        v = arrays[k]
        rows = [idx[1].indices(v.shape[1])[:2] for idx in sharding.addressable_devices_indices_map(v.shape).values()]
        lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
        out[k] = jax.make_array_from_process_local_data(sharding, v[:, lo:hi], v.shape)
    return out


def _step_fn(
    graphdef: Any, loss_fn: LossFn, tx: optax.GradientTransformation, schedule: optax.Schedule, dtype: Any
) -> Callable:
    def loss_of(params: Any, micro: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        compute = jax.tree.map(lambda p: p.astype(dtype), params)
        return loss_fn(nnx.merge(graphdef, compute), micro)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        def one(acc: Any, micro: dict[str, jax.Array]) -> tuple[Any, tuple[jax.Array, dict[str, jax.Array]]]:
            (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params, micro)
            return jax.tree.map(jnp.add, acc, grads), (loss, aux)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (losses, aux) = jax.lax.scan(one, zeros, batch)
        n = jax.tree.leaves(batch)[0].shape[0]
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": losses.mean(), "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step)}
        metrics |= {k: v.mean() for k, v in aux.items()}
        return TrainState(params, opt_state, state.step + 1), metrics

    return step


def _jit_step(
    graphdef: Any, loss_fn: LossFn, tx: optax.GradientTransformation, cfg: TrainConfig, state_sh: Any, replicated: Any
) -> Any:
    """The jitted optimizer step of `train` (and of `step_memory`): state donated, out shardings explicit."""
    step = _step_fn(graphdef, loss_fn, tx, learning_rate_schedule(cfg), jnp.dtype(cfg.compute_dtype))
    return jax.jit(step, donate_argnums=0, out_shardings=(state_sh, replicated))


def step_memory(model: nnx.Module, loss_fn: LossFn, batch: dict[str, Any], *, cfg: TrainConfig, mesh: Mesh) -> Any:
    """XLA's memory analysis (`compiled.memory_analysis()`: per-device argument, output, alias and temp bytes) of
    `train`'s jitted step for `model` on `mesh` with one batch of the `[A, B, ...]` shapes and dtypes of `batch`
    (anything with `.shape` and `.dtype`). `model` may be abstract (`nnx.eval_shape`): the step is lowered and
    compiled on abstract values, never run, so nothing is allocated."""
    tx = make_optimizer(cfg)
    param_sh = nnx.to_pure_dict(state_shardings(nnx.state(model), mesh))
    shapes = nnx.to_pure_dict(nnx.state(model))
    params = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, jnp.float32, sharding=sh), shapes, param_sh)
    replicated = NamedSharding(mesh, PartitionSpec())
    compute_graph = _graphdef(model, cfg.compute_dtype, cfg.remat)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init).eval_shape(params)
        state_sh = TrainState(param_sh, jax.tree.map(lambda x: x.sharding, opt_state), replicated)
        state = TrainState(params, opt_state, jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated))
        batch_sh = _batch_shardings(batch, mesh)
        arrays = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k]) for k, v in batch.items()}
        step = _jit_step(compute_graph, loss_fn, tx, cfg, state_sh, replicated)
        return step.lower(state, arrays).compile().memory_analysis()


def _eval_fn(graphdef: Any, loss_fn: LossFn, dtype: Any) -> Callable:
    def evaluate(params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        compute = jax.tree.map(lambda p: p.astype(dtype), params)
        loss, aux = loss_fn(nnx.merge(graphdef, compute), jax.tree.map(lambda x: x[0], batch))
        return {"loss": loss, **aux}

    return evaluate


def train(
    model: nnx.Module,
    loss_fn: LossFn,
    examples: Examples,
    *,
    cfg: TrainConfig,
    workdir: str | os.PathLike,
    eval_examples: Examples | None = None,
    mesh: Mesh | None = None,
    length_bucket: int = 64,
    progress: bool = True,
    deadline: float | None = None,
) -> tuple[nnx.Module, dict[str, float]]:
    """Trains `model` (a `Decoder` or `PPM`) on `examples` with `loss_fn` for `cfg.steps` steps (module docstring).

    Args:
      model: the initial module; its params become the fp32 master copy (the module itself is not changed).
      loss_fn: `(module, micro-batch) -> (loss, metrics)`, see `rstar_jax/train/losses.py`.
      examples: the training view; `eval_examples`: the held-out view (evaluated every `cfg.eval_every` steps
        and at the end).
      workdir: checkpoints, `metrics.jsonl` and the TensorBoard event file; a rerun resumes from its latest
        checkpoint.
      mesh: a (data, fsdp, tensor) mesh; default one device.
      length_bucket: batches are cut to their longest real sequence rounded up to a multiple of this (<= T).
      progress: show the progress bar (its summary line is logged either way).
      deadline: a `time.monotonic()` time: the first step that ends after it is saved and training stops there
        (a long run done in pieces; the next call resumes from that step).

    Returns:
      (the trained module in fp32, the final metrics: last train step and `eval_*`).
    """
    mesh = mesh or make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1])
    os.makedirs(workdir, exist_ok=True)
    dtype = jnp.dtype(cfg.compute_dtype)
    compute_graph, master_graph = _graphdef(model, cfg.compute_dtype, cfg.remat), _graphdef(model, "float32")
    tx = make_optimizer(cfg)
    A, B = cfg.accum_steps, cfg.batch_size
    param_sh = nnx.to_pure_dict(state_shardings(nnx.state(model), mesh))
    with jax.set_mesh(mesh):
        to_master = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(jnp.float32), p), out_shardings=param_sh)
        params = to_master(nnx.to_pure_dict(nnx.state(model)))  # fp32 copy written straight into its shards
        opt_state = jax.jit(tx.init)(params)
    replicated = NamedSharding(mesh, PartitionSpec())
    state_sh = TrainState(param_sh, jax.tree.map(lambda x: x.sharding, opt_state), replicated)
    state = TrainState(params, opt_state, jax.device_put(jnp.zeros((), jnp.int32), replicated))
    # One jitted step: it retraces per batch length (bucket); the state arrives with `state_sh`, the batch with
    # `_batch_shardings`, and leaves with `state_sh` again.
    step_jit = _jit_step(compute_graph, loss_fn, tx, cfg, state_sh, replicated)

    eval_jit = jax.jit(_eval_fn(compute_graph, loss_fn, dtype), out_shardings=replicated)

    def run_eval(params: Any) -> dict[str, float]:
        if eval_examples is None or len(eval_examples) == 0:
            return {}
        batches = [trim_padding(b, length_bucket) for b in eval_examples.eval_batches(B)]
        with jax.set_mesh(mesh):
            outs = [jax.device_get(eval_jit(params, _global_batch(b, mesh))) for b in batches]
        return {f"eval_{k}": float(np.mean([o[k] for o in outs])) for k in outs[0]}

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=cfg.save_every, async_save=False)
    # The model's HF config and head (`train.export` needs nothing else), and the settings a resume must share.
    record = checkpoint_config(model) | {TRAIN_KEY: resume_settings(cfg)}
    start = 0
    if ckpt.latest_step() is not None:
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state[:2], state_sh[:2])
        restored = ckpt.restore(params_target=target[0], opt_state_target=target[1])
        _check_resume(restored.config, record[TRAIN_KEY], f"{ckpt.directory}: step {restored.step}")
        start = int(restored.extra["step"])
        if restored.extra["micro_batches"] != start * A:
            raise ValueError(f"{ckpt.directory}: checkpoint data position {restored.extra} != step x accum_steps {A}")
        step_arr = jax.device_put(jnp.asarray(start, jnp.int32), replicated)
        state = TrainState(restored.params, restored.opt_state, step_arr)
        logging.info("rstar_jax/train: resumed from %s at step %d", ckpt.directory, start)
    last: dict[str, float] = {}
    pending: list[tuple[int, list[str], dict[str, jax.Array]]] = []  # (step, problem ids, metrics on device)

    def fetch() -> dict[str, float]:
        """The pending steps' metrics on the host, each checked finite; the last step's metrics."""
        for (step, ids, _), metrics in zip(pending, jax.device_get([m for *_, m in pending]), strict=True):
            got = {k: float(v) for k, v in metrics.items()}
            if not (math.isfinite(got["loss"]) and math.isfinite(got["grad_norm"])):
                raise NonFiniteError(
                    f"rstar_jax/train/loop.py: step {step}: non-finite loss={got['loss']} or "
                    f"grad_norm={got['grad_norm']}; problem ids of the batch: {sorted(set(ids))}"
                )
        pending.clear()
        return got

    tokens, since = 0, time.perf_counter()  # real tokens trained on since the last log point, and when that was
    with (
        Progress(total=cfg.steps, desc="train", unit="step", enabled=progress) as bar,
        ckpt,
        MetricsLog(workdir, start) as log,
    ):
        bar.update(start)
        for step in range(start, cfg.steps):
            arrays, ids = examples.micro_batches(step * A, A, B, cfg.seed, cfg.length_window)
            arrays = trim_padding(arrays, length_bucket)  # [A, B, T] -> [A, B, T' <= T]
            tokens += real_tokens(arrays)
            with jax.set_mesh(mesh):
                state, metrics = step_jit(state, _global_batch(arrays, mesh))
            done = step + 1
            pending.append((done, ids, metrics))
            bar.update(1)
            preempted = done < cfg.steps and ckpt.reached_preemption(done)
            stop = preempted or (deadline is not None and time.monotonic() > deadline)
            final = done == cfg.steps or stop
            evaluate = final or (bool(cfg.eval_every) and done % cfg.eval_every == 0)
            if not (evaluate or done % cfg.log_every == 0 or done % cfg.save_every == 0):
                continue  # metrics stay on the device until a log, eval or save point
            last = fetch()  # raises on a non-finite step before anything is saved
            speed = {"tokens_per_s": tokens / max(time.perf_counter() - since, 1e-9)}
            if evaluate:
                last |= run_eval(state.params)
            if done % cfg.log_every == 0 or evaluate:
                log.write(done, last, throughput=speed)
                shown = {k: round(v, 5) for k, v in last.items()}
                logging.info("rstar_jax/train step %d: %s", done, shown, extra={"console": not progress})
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            extra = {"step": done, "micro_batches": done * A}
            ckpt.save(done, params=state.params, opt_state=state.opt_state, config=record, extra=extra, force=final)
            if done % cfg.log_every == 0 or evaluate:
                tokens, since = 0, time.perf_counter()
            if preempted:
                ckpt.wait()
                raise Preempted(f"{ckpt.directory}: preempted; step {done} saved, rerun the same command to resume")
            if final:
                break
            last = {k: v for k, v in last.items() if not k.startswith("eval_")}
    if not last:  # resumed at the last step: nothing was trained, the record of that step is already logged
        last = run_eval(state.params)
    return nnx.merge(master_graph, state.params), last
