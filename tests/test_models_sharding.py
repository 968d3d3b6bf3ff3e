"""Sharding on 8 fake CPU devices: mesh (data=2, fsdp=2, tensor=2) forward equals the single-device forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers_hf import TINY_VOCAB, make_hf_model, ragged_batch, tiny_config
from jax.sharding import PartitionSpec as P

from rstar_jax.models import (
    PPM,
    Decoder,
    KVCache,
    MeshConfig,
    ModelConfig,
    init_model,
    load_decoder,
    logical_to_spec,
    make_mesh,
    named_sharding,
    state_shardings,
)

BATCH = ("act_batch", "act_length")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2")
    make_hf_model("qwen2", path)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return load_decoder(model_dir)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))


def _sharded(fn, module, mesh, inputs, out_names):
    """jit `fn(module, *inputs)` with explicit in/out shardings over `mesh`; returns a host array."""
    graphdef, state = nnx.split(module)
    state_sh = state_shardings(state, mesh)
    in_sh = [named_sharding(BATCH, x.shape, mesh) for x in inputs]
    out_shape = jax.eval_shape(lambda s, *a: fn(nnx.merge(graphdef, s), *a), state, *inputs).shape
    jitted = jax.jit(
        lambda s, *a: fn(nnx.merge(graphdef, s), *a),
        in_shardings=(state_sh, *in_sh),
        out_shardings=named_sharding(out_names, out_shape, mesh),
    )
    with jax.set_mesh(mesh):
        args = [jax.device_put(x, sh) for x, sh in zip(inputs, in_sh, strict=True)]
        out = jitted(jax.device_put(state, state_sh), *args)
    assert len(out.sharding.device_set) == 8
    return np.asarray(out)


def test_parameters_are_sharded_by_the_rules_table(model, mesh):
    specs = state_shardings(nnx.state(model), mesh)
    assert specs["trunk"]["embed"].spec == P("tensor", "fsdp")
    assert specs["trunk"]["layers"]["wq"].spec == P(None, "fsdp", "tensor", None)
    assert specs["trunk"]["layers"]["w_down"].spec == P(None, "tensor", "fsdp")


def test_loading_onto_a_mesh_shards_each_parameter(model, model_dir, mesh):
    sharded = load_decoder(model_dir, mesh=mesh)
    wq = sharded.trunk.layers.wq[...]
    assert wq.sharding.spec == P(None, "fsdp", "tensor", None) and len(wq.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(wq), np.asarray(model.trunk.layers.wq[...]))


def test_init_model_is_born_sharded_and_matches_the_unsharded_init(mesh):
    config = ModelConfig.from_hf_dict(tiny_config("qwen2").to_dict())
    plain = init_model(Decoder, config, seed=3)
    sharded = init_model(Decoder, config, seed=3, mesh=mesh)
    w_up = sharded.trunk.layers.w_up[...]
    assert w_up.sharding.spec == P(None, "fsdp", "tensor") and len(w_up.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(w_up), np.asarray(plain.trunk.layers.w_up[...]))


def test_decoder_forward_on_mesh_equals_single_device(model, mesh):
    tokens, mask, positions = ragged_batch(4, 8, TINY_VOCAB, seed=0, left=True)
    single, _ = model(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    fn = lambda m, t, p, k: m(t, p, k)[0]  # noqa: E731
    sharded = _sharded(fn, model, mesh, (tokens, positions, mask), (*BATCH, "act_vocab"))
    assert np.abs(sharded - np.asarray(single))[mask].max() < 1e-5


def test_ppm_and_cached_decode_on_mesh_equal_single_device(model, mesh):
    tokens, mask, positions = ragged_batch(4, 6, TINY_VOCAB, seed=1, left=True)
    ppm = PPM.from_policy(model, nnx.Rngs(0))
    single = np.asarray(ppm(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask)))
    sharded = _sharded(lambda m, t, p, k: m(t, p, k), ppm, mesh, (tokens, positions, mask), ("act_batch",))
    assert np.abs(sharded - single).max() < 1e-5

    def prefill_then_step(m, t, p, k):
        cache = KVCache.init(m.config, batch=t.shape[0], length=8)
        _, cache = m(t[:, :5], p[:, :5], k[:, :5], cache)
        return m(t[:, 5:], p[:, 5:], k[:, 5:], cache)[0]

    single_step = np.asarray(prefill_then_step(model, *map(jnp.asarray, (tokens, positions, mask))))
    sharded_step = _sharded(prefill_then_step, model, mesh, (tokens, positions, mask), (*BATCH, "act_vocab"))
    assert np.abs(sharded_step - single_step).max() < 1e-5


def test_kv_cache_shardings_follow_the_rules_table(model, mesh):
    cache = KVCache.init(model.config, batch=4, length=8)
    shardings = cache.shardings(mesh)
    assert shardings.k.spec == P(None, ("data", "fsdp"), None, "tensor", None)
    assert shardings.mask.spec == P(("data", "fsdp"), None) and shardings.index.spec == P()
    placed = jax.device_put(cache, shardings)
    assert len(placed.k.sharding.device_set) == 8


def test_logical_to_spec_maps_names_through_the_rules_table(mesh):
    assert logical_to_spec(("act_batch", "act_length", "act_vocab")) == P(("data", "fsdp"), None, "tensor")
    assert logical_to_spec(("act_batch", "act_vocab"), (4, 6), mesh) == P(("data", "fsdp"), "tensor")
    assert logical_to_spec(("embed", "act_batch"), (4, 4), mesh) == P("fsdp", "data")  # a mesh axis shards once
    with pytest.raises(KeyError, match="'heads' is not in sharding.LOGICAL_AXIS_RULES"):
        logical_to_spec(("heads",))
    with pytest.raises(ValueError, match="rank 1"):
        logical_to_spec(("embed", "vocab"), (4,), mesh)


def test_a_dimension_its_mesh_axis_does_not_divide_is_an_error_not_replication(mesh):
    with pytest.raises(
        ValueError, match=r"dimension 0 \('kv_heads', 1\) is not divisible by mesh axis 'tensor' of size 2"
    ):
        logical_to_spec(("kv_heads", "embed"), (1, 32), mesh)
    with pytest.raises(ValueError, match=r"\('act_batch', 6\).*mesh axis \('data', 'fsdp'\) of size 4"):
        logical_to_spec(("act_batch", "act_vocab"), (6, 8), mesh)
    # the caller's explicit choice: that logical axis is replicated
    assert logical_to_spec(("kv_heads", "embed"), (1, 32), mesh, rules={"kv_heads": None}) == P(None, "fsdp")


def test_state_shardings_names_the_parameter_its_shape_and_the_mesh_axis():
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=8))
    state = {
        "attn": {
            "wq": nnx.Param(jnp.zeros((32, 4, 8)), out_sharding=("embed", "q_heads", "head_dim"), eager_sharding=False)
        }
    }
    with pytest.raises(ValueError) as err:
        state_shardings(state, mesh)
    message = str(err.value)
    assert "parameter ['attn']['wq'] of shape (32, 4, 8)" in message
    assert "('q_heads', 4) is not divisible by mesh axis 'tensor' of size 8" in message


def test_a_tiny_model_on_a_wide_tensor_axis_refuses_unless_heads_are_replicated_explicitly(model):
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=8))  # 4 query / 2 KV heads, vocab 96, mlp 48
    with pytest.raises(ValueError, match=r"parameter \['trunk'\].* is not divisible by mesh axis 'tensor' of size 8"):
        state_shardings(nnx.state(model), mesh)
    specs = state_shardings(nnx.state(model), mesh, rules={"q_heads": None, "kv_heads": None})
    assert specs["trunk"]["layers"]["wq"].spec == P(None, "fsdp", None, None)
    assert specs["trunk"]["layers"]["w_up"].spec == P(None, "fsdp", "tensor")


def test_mesh_config_resolves_and_rejects_shapes():
    assert MeshConfig(data=2, fsdp=-1, tensor=2).shape(8) == (2, 2, 2)
    assert MeshConfig().shape(8) == (1, 8, 1)
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        MeshConfig(data=-1, fsdp=-1).shape(8)
    with pytest.raises(ValueError, match="product 12 != 8 devices"):
        MeshConfig(data=3, fsdp=2, tensor=2).shape(8)
