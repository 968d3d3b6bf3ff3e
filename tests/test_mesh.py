"""The `mesh` config section on 8 fake CPU devices: the micro round 1 on a (data=2, fsdp=2, tensor=2) mesh trains
the same SFT and PPM losses as on one device with the parameters really sharded; bad meshes and distributed
settings stop naming the key."""

import json
import runpy
from pathlib import Path

import jax
import numpy as np
import pytest

from rstar_jax.config import ConfigError, DistributedConfig, MeshSetup
from rstar_jax.config_validation import validate
from rstar_jax.devices import check_fits, initialize, initialize_kwargs, mesh_shape, on_mesh, run_mesh
from rstar_jax.evolve.model_cache import ModelCache
from rstar_jax.evolve.run import evolve
from rstar_jax.train import Kind, fit

ROOT = Path(__file__).resolve().parents[1]


def _micro(workdir: Path, mesh: MeshSetup):
    cfg = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
    cfg.workdir, cfg.last_round, cfg.mesh = str(workdir), 1, mesh
    cfg.toy_model.kv_heads = 2  # tensor=2 must divide the KV heads (1 would stop with an error naming them)
    cfg.evolve.full_eval_rounds = ()  # greedy evaluation only: still every sampling call on the mesh
    cfg.evolve.eval_problems = 2
    cfg.toy_model.read_per_band = 0  # no reading pretraining of the scratch base: faster, same plumbing
    cfg.compile_cache = ""
    return validate(cfg)


def _losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


@pytest.mark.slow
def test_micro_round_on_a_2x2x2_mesh_trains_like_one_device_with_sharded_parameters(tmp_path):
    """Round 1 of the micro run on the mesh; then its SFT and PPM jobs again on one device from the same data and
    initial models: the per-step losses agree, and the round's policy loads really sharded."""
    wd = tmp_path / "eight"
    cfg = _micro(wd, MeshSetup(data=-1, fsdp=2, tensor=2))
    evolve(cfg)
    rd = wd / "round_1"
    jobs = [
        (Kind.SFT, "sft.json", wd / "base" / "model", cfg.sft, rd / "sft" / "run"),
        (Kind.PPM, "pairs.json", rd / "sft" / "policy", cfg.ppm, rd / "ppm" / "run"),
    ]
    for kind, data, init, train_cfg, run in jobs:
        records = json.loads((rd / "data" / data).read_text())
        one = tmp_path / f"one_{kind.value}"
        fit(kind, records, init_dir=init, out_dir=one / "out", cfg=train_cfg, workdir=one / "run", progress=False)
        a, b = _losses(one / "run"), _losses(run)
        assert len(a) == len(b) >= 3
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5, err_msg=kind.value)
    mesh = run_mesh(cfg.mesh)
    with on_mesh(mesh):
        policy = ModelCache(cfg, mesh).policy(rd / "sft" / "policy", 0.0)
    shardings = [x.sharding for x in jax.tree.leaves(policy._state)]
    assert all(len(s.device_set) == 8 for s in shardings)
    assert any("tensor" in str(s.spec) for s in shardings) and any("fsdp" in str(s.spec) for s in shardings)
    with on_mesh(mesh):
        policy.generate_ids([[5, 6, 7], [8, 9]], 2, 4, seed=[0, 1])
    assert len(policy.pool.k.sharding.device_set) == 8 and "tensor" in str(policy.pool.k.sharding.spec)


@pytest.mark.parametrize(
    "setup, devices, match",
    [
        (MeshSetup(data=2, fsdp=2, tensor=1), 8, r"config.mesh.*4 devices, but the run has 8"),
        (MeshSetup(data=3, fsdp=-1, tensor=1), 8, r"config.mesh.fsdp = -1 but 8 devices are not divisible by 3"),
        (MeshSetup(data=-1, fsdp=-1), 8, "at most one"),
        (MeshSetup(tensor=0), 8, r"config.mesh.tensor = 0"),
    ],
)
def test_bad_meshes_name_the_key_and_the_device_count(setup, devices, match):
    with pytest.raises(ConfigError, match=match):
        mesh_shape(setup, devices)


def test_mesh_shapes_default_one_device_and_minus_one_takes_the_rest():
    assert mesh_shape(MeshSetup(), 8) == (1, 1, 1)
    assert mesh_shape(MeshSetup(fsdp=-1), 8) == (1, 8, 1)
    assert mesh_shape(MeshSetup(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
    assert run_mesh(MeshSetup()).devices.size == 1
    assert run_mesh(MeshSetup(fsdp=-1)).shape == {"data": 1, "fsdp": 8, "tensor": 1}


def test_config_validation_rejects_a_zero_axis():
    cfg = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
    cfg.mesh.fsdp = 0
    with pytest.raises(ConfigError, match=r"config.mesh.fsdp = 0"):
        validate(cfg)


def test_distributed_settings_resolve_from_flags_or_the_environment():
    assert initialize_kwargs(DistributedConfig(), env={}) is None  # one process: nothing to do
    assert initialize_kwargs(DistributedConfig(num_processes=1), env={}) is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}
    assert initialize_kwargs(DistributedConfig(), env=slurm) == {
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
    }
    given = DistributedConfig(coordinator="h0:1234", num_processes=2, process_id=1)
    assert initialize_kwargs(given, env={}) == {"coordinator_address": "h0:1234", "num_processes": 2, "process_id": 1}
    with pytest.raises(ConfigError, match=r"config.distributed.process_id = 2: must be < .*num_processes = 2"):
        initialize_kwargs(DistributedConfig(coordinator="h0:1", num_processes=2, process_id=2), env={})
    with pytest.raises(ConfigError, match=r"config.distributed.num_processes = 4 needs .*coordinator"):
        initialize_kwargs(DistributedConfig(num_processes=4), env={})


@pytest.mark.parametrize(
    "change, shape, match",
    [
        (
            {"toy_model.heads": 8, "toy_model.kv_heads": 8},
            (1, 1, 3),
            r"config.mesh.tensor=3 does not divide model heads: config.toy_model.heads = 8",
        ),
        ({"toy_model.kv_heads": 1}, (1, 2, 2), r"config.mesh.tensor=2 does not divide model kv_heads: .*= 1"),
        (
            {"toy_model.hidden": 36},
            (1, 8, 1),
            r"config.mesh.fsdp=8 does not divide model hidden: config.toy_model.hidden = 36",
        ),
        (
            {"toy_model.kv_heads": 2, "toy_model.vocab": 385},
            (1, 1, 2),
            r"config.mesh.tensor=2 does not divide model vocab: .*= 385",
        ),
        ({"sft.batch_size": 6}, (2, 2, 1), r"= 4 devices do not divide config.sft.batch_size = 6"),
        (
            {"pretrain.batch_size": 4},
            (1, 8, 1),
            r"config.mesh.fsdp=8 = 8 devices do not divide config.pretrain.batch_size",
        ),
    ],
)
def test_a_mesh_axis_that_does_not_divide_a_dimension_names_both_keys(change, shape, match):
    cfg = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
    for section in ("pretrain", "sft", "ppm"):
        getattr(cfg, section).batch_size = 8
    for key, value in change.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError, match=match):
        check_fits(cfg, shape)


def test_a_mesh_that_divides_every_dimension_passes_and_an_hf_base_is_read_from_its_config_json(tmp_path):
    cfg = runpy.run_path(str(ROOT / "configs" / "micro.py"))["get_config"]()
    cfg.toy_model.kv_heads = 2
    check_fits(cfg, (1, 2, 2))  # micro: heads 2, kv 2, hidden 32, mlp 64, vocab 384, batches of 4
    cfg.toy_model.read_per_band, cfg.pretrain.batch_size = 0, 3
    check_fits(cfg, (1, 2, 2))  # no reading pretraining: config.pretrain is not used
    cfg.model.base = str(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 12, "hidden_size": 768}))
    with pytest.raises(ConfigError, match=r"config.mesh.tensor=8 does not divide model heads: num_attention_heads in"):
        check_fits(cfg, (1, 1, 8))


def test_a_process_count_that_disagrees_with_the_coordinator_names_the_key(monkeypatch):
    import jax

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: None)  # a coordinator that reports 1 process
    with pytest.raises(ConfigError, match=r"config.distributed.num_processes = 2, but the coordinator h0:1 reports 1"):
        initialize(DistributedConfig(coordinator="h0:1", num_processes=2, process_id=0))
