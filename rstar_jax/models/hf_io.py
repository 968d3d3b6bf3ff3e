"""Hugging Face interop: the one module that reads and writes HF model directories.

Reads `config.json` and `model.safetensors` or sharded `model-*.safetensors` with
`model.safetensors.index.json` (bf16 included, memory-mapped); writes directories that `transformers` and vLLM
load as `*ForCausalLM` (policy) or `*ForSequenceClassification` with one label (PPM: decoder plus the value
head as `score.weight` in the same safetensors; the tanh recorded in `config.json` under `rstar_value_head`).
HF Linear weights are `[out, in]`; ours are `[in, ...out]` and stacked over layers, so loading transposes,
reshapes, stacks and splits Phi-3's fused `qkv_proj` / `gate_up_proj`; exporting inverts it exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from safetensors.numpy import save_file

from rstar_jax.models.config import ConfigError, ModelConfig, load_config
from rstar_jax.models.decoder import Decoder, Trunk
from rstar_jax.models.ppm import PPM
from rstar_jax.models.safetensors_files import (
    INDEX_FILE,
    SINGLE_FILE,
    WeightsError,
    check_finite,
    check_weight_headers,
    read_safetensors,
    safetensors_header,
    weight_files,
)
from rstar_jax.models.sharding import state_shardings

VALUE_HEAD_KEY = "score.weight"
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
PPM_README = """# rStar process preference model (PPM), exported by rstar_jax

A decoder with a one-label value head (`score.weight`, no bias): load it with transformers'
`AutoModelForSequenceClassification` (or serve it with vLLM as a reward / classification model).

**The served score is pre-tanh.** The model's logits are `r = w . h_last`, the head applied to the final hidden
state of the last non-pad token. rstar_jax's value of a step is `tanh(r)`, in (-1, 1): apply the tanh yourself
when you use this model outside rstar_jax (`config.json`: `rstar_value_head`). Bradley-Terry training compares
`r` of a preferred and a rejected step, so the ranking of steps is the same before and after the tanh.
"""


def _hf_layer_shapes(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Expected HF shapes of one layer's tensors, by name suffix after `model.layers.{i}.`."""
    D, N, K, H, F = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "input_layernorm.weight": (D,),
        "post_attention_layernorm.weight": (D,),
        "self_attn.o_proj.weight": (D, N * H),
        "mlp.down_proj.weight": (D, F),
    }
    if c.model_type == "phi3":
        shapes |= {"self_attn.qkv_proj.weight": ((N + 2 * K) * H, D), "mlp.gate_up_proj.weight": (2 * F, D)}
    else:
        shapes |= {
            "self_attn.q_proj.weight": (N * H, D),
            "self_attn.k_proj.weight": (K * H, D),
            "self_attn.v_proj.weight": (K * H, D),
            "mlp.gate_proj.weight": (F, D),
            "mlp.up_proj.weight": (F, D),
        }
    if c.qkv_bias:
        shapes |= {
            "self_attn.q_proj.bias": (N * H,),
            "self_attn.k_proj.bias": (K * H,),
            "self_attn.v_proj.bias": (K * H,),
        }
    return shapes


def _hf_shapes(c: ModelConfig, head: str | None) -> dict[str, tuple[int, ...]]:
    """Every expected HF tensor: the trunk, plus `lm_head.weight` (untied LM) or `score.weight` (PPM)."""
    shapes = {"model.embed_tokens.weight": (c.vocab_size, c.hidden_size), "model.norm.weight": (c.hidden_size,)}
    for i in range(c.num_layers):
        shapes |= {f"model.layers.{i}.{k}": s for k, s in _hf_layer_shapes(c).items()}
    if head == "lm_head.weight":
        shapes[head] = (c.vocab_size, c.hidden_size)
    elif head == VALUE_HEAD_KEY:
        shapes[head] = (1, c.hidden_size)
    return shapes


def _check(
    c: ModelConfig, tensors: dict[str, np.ndarray], origin: dict[str, str], head: str | None, src: Any, config_src: Any
) -> None:
    """Every tensor the config implies is there with its shape, and no other; `src` names the weights, `config_src`
    the config, `origin` each tensor's file."""
    expected = _hf_shapes(c, head)
    for key, shape in expected.items():
        if key not in tensors:
            raise WeightsError(f"{src}: tensor {key!r} is missing from the weights (config {config_src})")
        if tuple(tensors[key].shape) != shape:
            raise WeightsError(
                f"{origin[key]}: tensor {key!r} has shape {tuple(tensors[key].shape)} but {config_src} implies {shape}"
            )
    extra = [k for k in tensors if k not in expected and not k.endswith(_IGNORED_SUFFIXES) and k != "lm_head.weight"]
    if extra:
        raise WeightsError(f"{origin[extra[0]]}: unexpected tensors for this config: {extra[:5]}")
    check_finite({k: tensors[k] for k in expected}, origin)


def _trunk_arrays(c: ModelConfig, t: dict[str, np.ndarray]) -> dict[str, Any]:
    """HF tensors -> the pure-dict state of `Trunk` (stacked, transposed, fused projections split)."""
    D, N, K, H, F = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    per_layer: dict[str, list[np.ndarray]] = {}
    for i in range(c.num_layers):
        g = lambda name, i=i: t[f"model.layers.{i}.{name}"]  # noqa: E731
        if c.model_type == "phi3":
            qkv, gate_up = g("self_attn.qkv_proj.weight"), g("mlp.gate_up_proj.weight")
            q_w, k_w, v_w = np.split(qkv, [N * H, (N + K) * H], axis=0)
            gate_w, up_w = gate_up[:F], gate_up[F:]
        else:
            q_w, k_w, v_w = g("self_attn.q_proj.weight"), g("self_attn.k_proj.weight"), g("self_attn.v_proj.weight")
            gate_w, up_w = g("mlp.gate_proj.weight"), g("mlp.up_proj.weight")
        layer = {
            "attn_norm": g("input_layernorm.weight"),
            "mlp_norm": g("post_attention_layernorm.weight"),
            "wq": q_w.T.reshape(D, N, H),
            "wk": k_w.T.reshape(D, K, H),
            "wv": v_w.T.reshape(D, K, H),
            "wo": g("self_attn.o_proj.weight").T.reshape(N, H, D),
            "w_gate": gate_w.T,
            "w_up": up_w.T,
            "w_down": g("mlp.down_proj.weight").T,
        }
        if c.qkv_bias:
            layer |= {
                "bq": g("self_attn.q_proj.bias").reshape(N, H),
                "bk": g("self_attn.k_proj.bias").reshape(K, H),
                "bv": g("self_attn.v_proj.bias").reshape(K, H),
            }
        for name, value in layer.items():
            per_layer.setdefault(name, []).append(value)
    layers = {name: np.stack(values) for name, values in per_layer.items()}
    return {"embed": t["model.embed_tokens.weight"], "layers": layers, "final_norm": t["model.norm.weight"]}


def _trunk_tensors(c: ModelConfig, trunk: Trunk) -> dict[str, np.ndarray]:
    """Inverse of `_trunk_arrays`: the HF `model.*` tensors, contiguous, in the parameter dtype."""
    D, N, H = c.hidden_size, c.num_heads, c.head_dim
    p = {k: np.asarray(jax.device_get(v)) for k, v in nnx.to_pure_dict(nnx.state(trunk.layers)).items()}
    out = {"model.embed_tokens.weight": np.asarray(jax.device_get(trunk.embed[...]))}
    out["model.norm.weight"] = np.asarray(jax.device_get(trunk.final_norm[...]))
    for i in range(c.num_layers):
        pre = f"model.layers.{i}."
        q_w, k_w, v_w = (p[n][i].reshape(D, -1).T for n in ("wq", "wk", "wv"))
        layer = {
            "input_layernorm.weight": p["attn_norm"][i],
            "post_attention_layernorm.weight": p["mlp_norm"][i],
            "self_attn.o_proj.weight": p["wo"][i].reshape(N * H, D).T,
            "mlp.down_proj.weight": p["w_down"][i].T,
        }
        if c.model_type == "phi3":
            layer["self_attn.qkv_proj.weight"] = np.concatenate([q_w, k_w, v_w], axis=0)
            layer["mlp.gate_up_proj.weight"] = np.concatenate([p["w_gate"][i].T, p["w_up"][i].T], axis=0)
        else:
            layer |= {"self_attn.q_proj.weight": q_w, "self_attn.k_proj.weight": k_w, "self_attn.v_proj.weight": v_w}
            layer |= {"mlp.gate_proj.weight": p["w_gate"][i].T, "mlp.up_proj.weight": p["w_up"][i].T}
        if c.qkv_bias:
            layer |= {f"self_attn.{n}_proj.bias": p[f"b{n}"][i].reshape(-1) for n in ("q", "k", "v")}
        out |= {pre + k: np.ascontiguousarray(v) for k, v in layer.items()}
    return out


def _build(cls: type, c: ModelConfig, pure: dict[str, Any], mesh: Mesh | None = None) -> Any:
    """Instantiate `cls(c)` abstractly and fill it with `pure` (a nested dict of host arrays).

    With `mesh`, each array goes straight from host memory into its shards (logical axes -> rules table),
    so a 7B checkpoint never has to fit on one device.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: cls(c, rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: np.asarray(a, c.dtype), pure))
    state = jax.device_put(state, None if mesh is None else state_shardings(state, mesh))
    return nnx.merge(graphdef, state)


def _load(model_dir: str | Path, head: str | None, dtype: str | None) -> tuple[ModelConfig, dict[str, Any]]:
    model_dir = Path(model_dir)
    c = load_config(model_dir)
    if dtype is not None:
        c = c.replace(param_dtype=dtype)
    tensors, origin = read_safetensors(model_dir)
    _check(c, tensors, origin, head, model_dir, model_dir / "config.json")
    return c, _pure(c, tensors, head)


def _pure(c: ModelConfig, tensors: dict[str, np.ndarray], head: str | None) -> dict[str, Any]:
    """Checked HF tensors -> the pure-dict state of `Decoder` (head `lm_head.weight` or none) or `PPM`."""
    pure: dict[str, Any] = {"trunk": _trunk_arrays(c, tensors)}
    if head == "lm_head.weight":
        pure["lm_head"] = tensors[head].T
    elif head == VALUE_HEAD_KEY:
        pure["value_head"] = tensors[head][0]
    return pure


def decoder_from_tensors(
    config: ModelConfig, tensors: dict[str, np.ndarray], source: Any, mesh: Mesh | None = None
) -> Decoder:
    """A causal LM from HF-named tensors read by another loader (e.g. `models.gguf`); `source` names them in errors."""
    head = None if config.tie_word_embeddings else "lm_head.weight"
    _check(config, tensors, dict.fromkeys(tensors, str(source)), head, source, source)
    return _build(Decoder, config, _pure(config, tensors, head), mesh)


def load_decoder(model_dir: str | Path, dtype: str | None = None, mesh: Mesh | None = None) -> Decoder:
    """A causal LM from an HF directory (`*ForCausalLM`).

    `dtype` ("float32" / "bfloat16" / "float16") overrides the stored parameter dtype; `mesh` places the
    parameters sharded by their logical axes (default: the default device).
    """
    c = load_config(model_dir)
    c, pure = _load(model_dir, None if c.tie_word_embeddings else "lm_head.weight", dtype)
    return _build(Decoder, c, pure, mesh)


def load_ppm(model_dir: str | Path, dtype: str | None = None, mesh: Mesh | None = None) -> PPM:
    """A PPM exported by `save_ppm` (an HF `*ForSequenceClassification` with one label)."""
    load_config(model_dir)  # names the file if it is missing or malformed
    if "rstar_value_head" not in json.loads((Path(model_dir) / "config.json").read_text()):
        raise ConfigError(
            f"{Path(model_dir) / 'config.json'}: no 'rstar_value_head' entry, so this is not a PPM export; "
            "build a PPM from a policy with PPM.from_policy(load_decoder(dir), rngs)"
        )
    c, pure = _load(model_dir, VALUE_HEAD_KEY, dtype)
    return _build(PPM, c, pure, mesh)


def _write(
    tensors: dict[str, np.ndarray],
    config: dict[str, Any],
    out_dir: str | Path,
    max_shard_bytes: int | None,
    tokenizer: Any,
    readme: str | None = None,
) -> None:
    """Write config.json, one or more safetensors files (+ index when sharded), the tokenizer and a README.md.

    Everything is written to a sibling temporary directory that then replaces `out_dir`, so an interrupted
    export never leaves a half-written model or stale shards from an earlier export behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # never replace (and lose) a file of the user's
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory; an HF export is a directory")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].nbytes
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key], size = tensors[key], size + nbytes
    if len(shards) == 1:
        save_file(shards[0], str(tmp / SINGLE_FILE), metadata={"format": "pt"})
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            weight_map |= dict.fromkeys(shard, name)
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    if readme is not None:
        (tmp / "README.md").write_text(readme)
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def save_decoder(
    model: Decoder, out_dir: str | Path, max_shard_bytes: int | None = None, tokenizer: Any = None
) -> None:
    """Export a causal LM as an HF `*ForCausalLM` directory (config.json, safetensors, optional tokenizer)."""
    c = model.config
    tensors = _trunk_tensors(c, model.trunk)
    if model.lm_head is not None:
        tensors["lm_head.weight"] = np.ascontiguousarray(np.asarray(jax.device_get(model.lm_head[...])).T)
    _write(tensors, c.to_hf_dict(), out_dir, max_shard_bytes, tokenizer)


def save_ppm(ppm: PPM, out_dir: str | Path, max_shard_bytes: int | None = None, tokenizer: Any = None) -> None:
    """Export a PPM as an HF `*ForSequenceClassification` (num_labels=1) plus `rstar_value_head` in config.

    transformers scores the last token that is not `pad_token_id`; when the config has none, the
    tokenizer's pad token (if given) is recorded, so batched scoring works out of the box.
    """
    c = ppm.config
    if c.pad_token_id is None and tokenizer is not None and tokenizer.pad_token_id is not None:
        c = c.replace(pad_token_id=int(tokenizer.pad_token_id))
    tensors = _trunk_tensors(c, ppm.trunk)
    tensors[VALUE_HEAD_KEY] = np.asarray(jax.device_get(ppm.value_head[...]))[None, :]
    config = c.to_hf_dict()
    config["architectures"] = [config["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")]
    config |= {"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    config["rstar_value_head"] = {
        "transform": "tanh",
        "pooling": "last_non_pad_token",
        "weight": VALUE_HEAD_KEY,
        "served_score": "pre-tanh: the logits are w . h_last; rstar_jax applies the tanh",
    }
    _write(tensors, config, out_dir, max_shard_bytes, tokenizer, readme=PPM_README)


def build_from_arrays(cls: type, config: ModelConfig, pure: dict[str, Any], mesh: Mesh | None = None) -> Any:
    """`cls` (Decoder or PPM) for `config` holding the arrays in `pure` (a nested dict like `nnx.to_pure_dict`)."""
    return _build(cls, config, pure, mesh)


__all__ = [
    "WeightsError",
    "build_from_arrays",
    "check_weight_headers",
    "decoder_from_tensors",
    "load_decoder",
    "load_ppm",
    "read_safetensors",
    "safetensors_header",
    "save_decoder",
    "save_ppm",
    "weight_files",
]
