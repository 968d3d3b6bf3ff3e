"""Checkpointer: bit-exact round trips, async saves, restore across meshes, and refusing bad targets or inputs.

Trees here are small hand-made params dicts plus a real optax adamw state, so the tests need no model code.
Meshes use the 8 fake CPU devices from conftest: A = (data=2, fsdp=2, tensor=2), B = (fsdp=8), C = one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rstar_jax.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    committed_steps,
)

# Param name -> (shape, dtype, spec on mesh A, spec on mesh B). Shapes divide 2x2x2 and 8.
LAYOUT = {
    ("embed",): ((16, 8), jnp.float32, P("fsdp", "tensor"), P("fsdp", None)),
    ("layer", "w"): ((8, 32), jnp.bfloat16, P(None, ("fsdp", "tensor")), P(None, "fsdp")),
    ("layer", "b"): ((32,), jnp.float32, P(), P()),
    ("layer", "ids"): ((4, 2), jnp.int32, P("data"), P()),
}
CONFIG = {"model": {"width": 8, "layers": (1, 2)}, "lr": 1e-3, "name": "tiny"}


def _mesh(kind: str) -> jax.sharding.Mesh:
    if kind == "A":
        return jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"))
    if kind == "B":
        return jax.make_mesh((8,), ("fsdp",))
    return jax.make_mesh((1,), ("fsdp",), devices=jax.devices()[:1])


def _spec(kind: str, a_spec: P, b_spec: P) -> P:
    return a_spec if kind == "A" else b_spec if kind == "B" else P()


def _nest(flat: dict[tuple[str, ...], object]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def make_params(kind: str, seed: int = 0) -> dict:
    """Params on mesh `kind`, with values that depend on `seed` (so steps are distinguishable)."""
    mesh, rng, flat = _mesh(kind), np.random.default_rng(seed), {}
    for path, (shape, dtype, a_spec, b_spec) in LAYOUT.items():
        if jnp.issubdtype(dtype, jnp.integer):
            host = rng.integers(-100, 100, size=shape).astype(dtype)
        else:
            host = rng.standard_normal(shape).astype(dtype)
        flat[path] = jax.device_put(host, NamedSharding(mesh, _spec(kind, a_spec, b_spec)))
    return _nest(flat)


def abstract_params(kind: str) -> dict:
    mesh = _mesh(kind)
    return _nest(
        {
            path: jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, _spec(kind, a, b)))
            for path, (shape, dtype, a, b) in LAYOUT.items()
        }
    )


OPT = optax.masked(optax.adamw(1e-2), lambda p: jax.tree.map(lambda x: jnp.issubdtype(x.dtype, jnp.floating), p))


def make_opt_state(params: dict) -> optax.OptState:
    """adamw state after one update, so mu, nu and count are all non-trivial."""
    state = OPT.init(params)
    grads = jax.tree.map(lambda x: (x * 0.5).astype(x.dtype), params)
    _, state = OPT.update(grads, state, params)
    return state


def abstract_opt_state(kind: str) -> optax.OptState:
    """Optimizer-state target on mesh `kind`: param-shaped leaves take the param's sharding, the rest replicate."""
    target = abstract_params(kind)
    replicated = NamedSharding(_mesh(kind), P())
    return optax.tree_map_params(
        OPT,
        lambda leaf, t: (
            leaf
            if isinstance(leaf, optax.MaskedNode)
            else jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=t.sharding)
        ),
        jax.eval_shape(OPT.init, target),
        target,
        transform_non_params=lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated),
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )


def assert_bit_equal(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.asarray(g).tobytes() == np.asarray(w).tobytes()


def test_round_trip_is_bit_exact(tmp_path):
    params = make_params("A")
    opt_state = make_opt_state(params)
    with Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        assert ckpt.save(7, params=params, opt_state=opt_state, config=CONFIG, extra={"cursor": 123})
        restored = ckpt.restore(params_target=abstract_params("A"), opt_state_target=abstract_opt_state("A"))
    assert restored.step == 7
    assert_bit_equal(restored.params, params)
    assert_bit_equal(restored.opt_state, opt_state)
    assert int(restored.opt_state.inner_state[0].count) == 1
    assert restored.config == {"model": {"width": 8, "layers": [1, 2]}, "lr": 1e-3, "name": "tiny"}
    assert restored.extra == {"cursor": 123}
    for got, want in zip(jax.tree.leaves(restored.params), jax.tree.leaves(abstract_params("A")), strict=True):
        assert got.sharding == want.sharding


def test_async_saves_commit_and_restore_in_a_new_checkpointer(tmp_path):
    with Checkpointer(tmp_path, async_save=True) as ckpt:
        for step in (1, 2):
            params = make_params("A", seed=step)
            assert ckpt.save(step, params=params, config=CONFIG)
            for leaf in jax.tree.leaves(params):  # as a donating train step would: the save owns a host copy
                leaf.delete()
    assert committed_steps(tmp_path) == [1, 2]
    with Checkpointer(tmp_path, create=False) as ckpt:
        assert ckpt.latest_step() == 2
        assert_bit_equal(ckpt.restore(params_target=abstract_params("A")).params, make_params("A", seed=2))
        assert_bit_equal(ckpt.restore(1, params_target=abstract_params("A")).params, make_params("A", seed=1))
        assert ckpt.restore_config(1)["model"]["width"] == 8


@pytest.mark.parametrize(("src", "dst"), [("A", "B"), ("A", "C"), ("B", "A")])
def test_restore_onto_a_different_mesh(tmp_path, src, dst):
    params = make_params(src)
    opt_state = make_opt_state(params)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, params=params, opt_state=opt_state)
    target, opt_target = abstract_params(dst), abstract_opt_state(dst)
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(params_target=target, opt_state_target=opt_target)
    assert_bit_equal(jax.device_get(restored.params), jax.device_get(params))
    assert_bit_equal(jax.device_get(restored.opt_state), jax.device_get(opt_state))
    for got, want in zip(jax.tree.leaves(restored.params), jax.tree.leaves(target), strict=True):
        assert got.sharding == want.sharding
    for got, want in zip(jax.tree.leaves(restored.opt_state), jax.tree.leaves(opt_target), strict=True):
        assert got.sharding == want.sharding


def test_restore_without_target_gives_nested_dicts_on_one_device(tmp_path):
    params = make_params("A")
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=params, opt_state=make_opt_state(params))
        restored = ckpt.restore()
    assert restored.opt_state is None and restored.config is None and restored.extra is None
    assert_bit_equal(jax.device_get(restored.params), jax.device_get(params))
    assert {leaf.sharding for leaf in jax.tree.leaves(restored.params)} == {
        jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    }


def test_flax_nnx_state_as_pure_dict_round_trips(tmp_path):
    """NNX pure dicts key list entries by int; the stored paths and the mismatch messages use their decimals."""
    from flax import nnx

    model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert 0 in pure["layers"]
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), pure)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=pure)
        restored = ckpt.restore(params_target=abstract)
        assert_bit_equal(restored.params, pure)
        other = nnx.to_pure_dict(nnx.state(nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0))), nnx.Param))
        with pytest.raises(CheckpointMismatchError, match="params/layers/1/kernel: in the checkpoint, not in"):
            ckpt.restore(
                params_target=jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), other)
            )
    model_again = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(5)), nnx.Linear(8, 2, rngs=nnx.Rngs(6)))
    state = nnx.state(model_again, nnx.Param)
    nnx.replace_by_pure_dict(state, restored.params)
    nnx.update(model_again, state)
    x = jnp.ones((3, 4))
    assert np.asarray(model_again(x)).tobytes() == np.asarray(model(x)).tobytes()


def test_mismatched_target_names_every_bad_key(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=make_params("A"))
        target = abstract_params("A")
        sharding = target["layer"]["b"].sharding
        target["layer"]["b"] = jax.ShapeDtypeStruct((16,), jnp.float32, sharding=sharding)
        target["layer"]["ids"] = jax.ShapeDtypeStruct((4, 2), jnp.float32, sharding=sharding)
        target["head"] = jax.ShapeDtypeStruct((2,), jnp.float32, sharding=sharding)
        del target["embed"]
        with pytest.raises(CheckpointMismatchError) as err:
            ckpt.restore(params_target=target)
    message = str(err.value)
    assert "params/layer/b: shape (32,) stored, (16,) in the target" in message
    assert "params/layer/ids: dtype int32 stored, float32 in the target" in message
    assert "params/head: in the target, not in the checkpoint" in message
    assert "params/embed: in the checkpoint, not in the target" in message
    assert "params/layer/w" not in message


def test_target_without_sharding_is_rejected_by_name(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=make_params("A"))
        target = abstract_params("A")
        target["embed"] = jax.ShapeDtypeStruct((16, 8), jnp.float32)
        with pytest.raises(CheckpointMismatchError, match="params/embed has no sharding"):
            ckpt.restore(params_target=target)


def test_opt_state_target_for_a_step_without_opt_state(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=make_params("A"))
        with pytest.raises(CheckpointMismatchError, match="no 'opt_state' item"):
            ckpt.restore(params_target=abstract_params("A"), opt_state_target=abstract_opt_state("A"))


def test_config_must_match_names_the_differing_keys(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=make_params("A"), config=CONFIG)
        assert ckpt.restore(config_must_match={"model": {"width": 8}, "name": "tiny"}).step == 1
        with pytest.raises(CheckpointMismatchError) as err:
            ckpt.restore(config_must_match={"model": {"width": 16, "heads": 2}, "name": "tiny"})
    assert "model.width: stored 8, expected 16" in str(err.value)
    assert "model.heads: not in the stored config" in str(err.value)
    assert "name" not in str(err.value).split("does not match")[1]


def test_missing_directory_is_an_error_unless_create(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(CheckpointNotFoundError, match="typo"):
        Checkpointer(missing, create=False)
    assert committed_steps(missing) == []
    with Checkpointer(missing) as ckpt:
        assert missing.is_dir()
        assert ckpt.latest_step() is None
        with pytest.raises(CheckpointNotFoundError, match="no committed checkpoint"):
            ckpt.restore()


def test_save_refuses_old_steps_and_follows_save_every(tmp_path):
    with Checkpointer(tmp_path, save_every=2) as ckpt:
        assert not ckpt.save(3, params=make_params("A"))
        assert ckpt.steps() == []
        assert ckpt.save(3, params=make_params("A"), force=True)
        assert ckpt.save(4, params=make_params("A"))
        for step in (4, 2):
            with pytest.raises(ValueError, match=f"cannot save step {step} .*: step 4 already exists"):
                ckpt.save(step, params=make_params("A"), force=True)
        assert ckpt.steps() == [3, 4]


def test_keeps_only_the_newest_steps(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        for step in range(1, 5):
            ckpt.save(step, params=make_params("C", seed=step))
        assert ckpt.steps() == [3, 4]
    with pytest.raises(ValueError, match="at least 2"):
        Checkpointer(tmp_path, max_to_keep=1)


def test_refuses_non_finite_values_and_names_them(tmp_path):
    params = make_params("A")
    bias = np.asarray(params["layer"]["b"]).copy()
    bias[3] = np.nan
    params["layer"]["b"] = jax.device_put(bias, params["layer"]["b"].sharding)
    params["host"] = np.array([1.0, np.inf], np.float32)  # numpy leaf, checked on the host
    params["dev3"] = jax.device_put(np.ones(3, np.float32), jax.devices()[3])  # another placement, finite
    opt_state = {"mu": jax.device_put(np.full((2,), -np.inf, np.float32), NamedSharding(_mesh("B"), P()))}
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(ValueError, match="non-finite values in") as err:
            ckpt.save(1, params=params, opt_state=opt_state)
        assert ckpt.steps() == []
    assert str(err.value).endswith("['params/host', 'params/layer/b', 'opt_state/mu']")


@pytest.mark.parametrize(
    ("config", "error", "needle"),
    [
        ({"model": {"width": np.float32(1.0)}}, TypeError, "config.model.width is float32"),
        ({"model": {3: "x"}}, TypeError, "config.model: key 3 is int"),
        ({"eps": float("inf")}, ValueError, "config.eps is inf"),
        ({"layers": [1, object()]}, TypeError, r"config.layers\[1\] is object"),
    ],
)
def test_config_must_be_json_data(tmp_path, config, error, needle):
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(error, match=needle):
            ckpt.save(1, params=make_params("C"), config=config)
        assert ckpt.steps() == []


def test_read_only_never_writes(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, params=make_params("C"))
    with Checkpointer(tmp_path, read_only=True) as ckpt:
        with pytest.raises(ValueError, match="read-only"):
            ckpt.save(2, params=make_params("C"))
        assert ckpt.steps() == [1]
    with pytest.raises(CheckpointNotFoundError):
        Checkpointer(tmp_path / "absent", read_only=True)
    ckpt = Checkpointer(tmp_path)
    ckpt.close()
    ckpt.close()
    with pytest.raises(ValueError, match="closed"):
        ckpt.save(2, params=make_params("C"))
