"""safetensors files on disk: the header reader, the memory-mapped tensors of an HF directory, the finiteness check.

    header, data_start = safetensors_header("m/model.safetensors")   # WeightsError names an empty or corrupt file
    tensors, origin = read_safetensors("m")                          # one file or the shards of the index

Every error is a `WeightsError` (a ValueError) naming the file and, where there is one, the tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "INDEX_FILE",
    "SINGLE_FILE",
    "WeightsError",
    "check_finite",
    "check_weight_headers",
    "read_safetensors",
    "safetensors_header",
    "weight_files",
]

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_ST_DTYPES: dict[str, Any] = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
}


class WeightsError(ValueError):
    """Weights on disk that do not match the config; the message names the file, the key and the shapes."""


def safetensors_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """The JSON header of one safetensors file (tensor name -> dtype, shape, data_offsets) and the size of the file.

    Raises `WeightsError` naming the file when it is empty, shorter than its header or the header is not JSON."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise WeightsError(f"{path}: not a safetensors file ({size} bytes; it is empty or truncated)")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if 8 + n > size:
            raise WeightsError(
                f"{path}: not a safetensors file (its header claims {n} bytes but the file has {size}; truncated?)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: not a safetensors file (unreadable header: {err})") from err
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (its header is a JSON {type(header).__name__})")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        ok = isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()
        offsets = info.get("data_offsets") if ok else None
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1] or 8 + n + offsets[1] > size:
            raise WeightsError(f"{path}: tensor {key!r} has a corrupt header entry or lies past the end of the file")
    return header, 8 + n


def _read_one(path: Path) -> dict[str, np.ndarray]:
    """Memory-map one safetensors file: 8-byte header length, JSON header, raw little-endian data."""
    header, start = safetensors_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise WeightsError(f"{path}: tensor {key!r} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        raw = data[start + begin : start + end]
        try:
            out[key] = raw.view(_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        except (ValueError, TypeError) as err:
            raise WeightsError(f"{path}: tensor {key!r} is truncated or corrupt ({err})") from err
    return out


def check_finite(tensors: dict[str, np.ndarray], origin: dict[str, str]) -> None:
    """Refuses weights holding NaN or infinity (a diverged or corrupt export), naming the file and the tensor."""
    chunk = 1 << 22  # elements per test: a small temporary even for a 7B model's embedding
    for key, value in tensors.items():
        if value.dtype.kind in "iub":
            continue
        flat = value.reshape(-1)
        for i in range(0, flat.size, chunk):
            part = flat[i : i + chunk]
            if not np.isfinite(part).all():
                bad = int((~np.isfinite(part)).argmax()) + i
                raise WeightsError(
                    f"{origin[key]}: tensor {key!r} holds a non-finite value ({float(flat[bad])} at flat index "
                    f"{bad}); these weights are broken (a diverged or corrupt export)"
                )


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of an HF directory (one file, or the shards its index lists), each checked to exist."""
    model_dir = Path(model_dir)
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise WeightsError(f"{index}: not a safetensors index ({type(err).__name__}: {err})") from err
    elif (model_dir / SINGLE_FILE).is_file():
        names = [SINGLE_FILE]
    else:
        raise WeightsError(f"{model_dir}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
    for name in names:
        if not (model_dir / name).is_file():
            raise WeightsError(f"{index}: lists shard {name!r}, which is missing from {model_dir}")
    return [model_dir / name for name in names]


def check_weight_headers(model_dir: str | Path) -> None:
    """Reads the header of every safetensors file of `model_dir` (cheap: no tensor data); raises `WeightsError`
    naming an empty, truncated or corrupt file."""
    for path in weight_files(model_dir):
        safetensors_header(path)


def read_safetensors(model_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors of an HF directory -> (name -> array, name -> file it came from)."""
    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for path in weight_files(model_dir):
        for key, value in _read_one(path).items():
            tensors[key], origin[key] = value, str(path)
    return tensors, origin
