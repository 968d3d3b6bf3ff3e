"""`launch.plan` and `rstar_jax.memory_plan`: exact per-device parameter bytes on fake devices, the paper's 7B
recipe fitting 8 x 80 GB, the published shapes, and the command's table."""

import subprocess
import sys
from pathlib import Path

import jax

from configs.paper import round_config
from rstar_jax.config import MeshSetup
from rstar_jax.devices import run_mesh
from rstar_jax.memory_plan import GB, memory_plan, sharded_param_bytes
from rstar_jax.models import abstract_decoder, count_params
from rstar_jax.models.shapes import QWEN25_MATH_1P5B, QWEN25_MATH_7B, ModelShape

ROOT = Path(__file__).resolve().parents[1]


def test_named_shapes_have_the_published_parameter_counts():
    assert count_params(abstract_decoder(QWEN25_MATH_1P5B)) == 1_543_714_304
    assert count_params(abstract_decoder(QWEN25_MATH_7B)) == 7_615_616_512
    assert ModelShape("qwen2.5-math-7b").config is QWEN25_MATH_7B


def test_parameter_bytes_are_the_shards_of_every_buffer():
    one = sharded_param_bytes(QWEN25_MATH_7B, run_mesh(MeshSetup()), "float32")
    assert one == 4 * 7_615_616_512
    eight = sharded_param_bytes(QWEN25_MATH_7B, run_mesh(MeshSetup(fsdp=8)), "bfloat16")
    # every matrix splits 8 ways over embed; only norms and biases (a few MB) are whole on each device
    assert 2 * 7_615_616_512 / 8 < eight < 2 * 7_615_616_512 / 8 + 8e6


def test_the_papers_7b_recipe_fits_eight_80gb_devices():
    cfg = round_config(2)
    phases = memory_plan(cfg, QWEN25_MATH_7B, run_mesh(MeshSetup(fsdp=4, tensor=2)))
    assert [p.name for p in phases] == ["sft", "ppm", "search"]
    assert all(p.total < 80 * GB for p in phases), [(p.name, p.total / GB) for p in phases]
    master, _bf16, _grads, moments, _activations = phases[0].lines
    assert moments.bytes == 2 * master.bytes  # two fp32 moments per fp32 master parameter
    too_big = memory_plan(cfg, QWEN25_MATH_7B, jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor")))
    assert too_big[0].total > 80 * GB  # on one device it does not fit


def test_remat_keeps_only_each_layers_input():
    cfg = round_config(2)
    mesh = run_mesh(MeshSetup(fsdp=8))
    plain = memory_plan(cfg, QWEN25_MATH_7B, mesh)[0].lines[-1].bytes
    cfg.sft.remat = True
    remat = memory_plan(cfg, QWEN25_MATH_7B, mesh)[0].lines[-1].bytes
    c, s = QWEN25_MATH_7B, cfg.sft
    rows, b = s.batch_size // 8, 2  # bf16 compute
    saved = c.num_layers * rows * s.max_length * c.hidden_size * b  # the layers' inputs
    assert saved < remat < plain / 4  # the inputs of 28 layers plus one layer's worth, not 28 layers' worth


def test_training_phases_come_from_xla_where_the_step_compiles_else_from_the_count():
    from rstar_jax import models
    from rstar_jax.memory_plan import ESTIMATE, EXACT, XLA
    from rstar_jax.toy.base_corpus import BASE_DIR

    cfg = round_config(2)
    for section in (cfg.sft, cfg.ppm):
        section.batch_size, section.accum_steps, section.max_length = 4, 2, 128
    c = models.load_config(BASE_DIR)
    mesh = run_mesh(MeshSetup(fsdp=2), jax.devices()[:2])
    sft, ppm, search = memory_plan(cfg, c, mesh, compiled=True)
    assert {x.source for x in sft.lines} == {x.source for x in ppm.lines} == {XLA}
    counted = memory_plan(cfg, c, mesh)[0]
    state = sum(x.bytes for x in counted.lines[:4] if "compute copy" not in x.name) - counted.lines[2].bytes
    assert sft.lines[0].bytes >= state  # the step's arguments hold at least the fp32 master and both moments
    assert sft.total != counted.total
    cfg.ppm.batch_size = 3  # 2 devices cannot split 3 pairs: the step does not compile, the count answers
    _, ppm, _ = memory_plan(cfg, c, mesh, compiled=True)
    assert {x.source for x in ppm.lines} == {EXACT, ESTIMATE}


def test_launch_plan_prints_the_table_without_weights():
    cmd = [sys.executable, "-m", "launch.plan", "--config=configs/round2.py", "--config.compile_cache="]
    cmd += ["--config.model.base=qwen2.5-math-1.5b", "--config.mesh.fsdp=8", "--hbm_gb=80", "--noxla"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stderr
    assert "mesh {'data': 1, 'fsdp': 8, 'tensor': 1}" in out.stdout
    assert "KV pool" in out.stdout and "optimizer state" in out.stdout and "of 80 GB: fits" in out.stdout
    assert "XLA memory analysis" not in out.stdout
    bad = subprocess.run(cmd[:-4] + ["--config.model.base=nope"], cwd=ROOT, capture_output=True, text=True, env=_env())
    assert bad.returncode == 2 and "config.model.base = 'nope'" in bad.stderr


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}
