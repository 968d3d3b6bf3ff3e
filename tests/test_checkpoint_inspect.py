"""`describe` and `python -m launch.inspect --ckpt=DIR`: the tree, shapes, dtypes, shardings, counts and config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rstar_jax.checkpoint import Checkpointer, CheckpointNotFoundError, describe

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"model": {"width": 16, "layers": 2}, "optim": {"lr": 0.001}}


def _row(text: str, path: str) -> list[str]:
    """The whitespace-split cells of the table row whose first cell is `path`."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == path:
            return cells
    raise AssertionError(f"no row for {path!r} in:\n{text}")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    """A two-step checkpoint saved on mesh (data=2, fsdp=2, tensor=2); returns (dir, params of step 20)."""
    directory = tmp_path_factory.mktemp("inspect") / "ckpt"
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"))
    params = {
        "embed": jax.device_put(np.ones((32, 16), np.float32), NamedSharding(mesh, P("fsdp", "tensor"))),
        "blocks": [
            {"w": jax.device_put(np.ones((16, 16), np.float32), NamedSharding(mesh, P(None, "tensor")))},
            {"w": jax.device_put(np.ones((16, 16), np.float32), NamedSharding(mesh, P(None, "tensor")))},
        ],
        "scale": jax.device_put(np.ones((16,), jax.numpy.bfloat16), NamedSharding(mesh, P())),
    }
    with Checkpointer(directory) as ckpt:
        ckpt.save(10, params=params, config={"model": {"width": 8}})
        ckpt.save(20, params=params, opt_state={"count": np.int32(3)}, config=CONFIG, extra={"cursor": 7})
    return directory, params


def test_describe_lists_tree_counts_shardings_and_config(saved):
    directory, params = saved
    text = describe(directory)
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    assert n_params == 32 * 16 + 2 * 16 * 16 + 16
    assert f"parameters: {n_params:,}" in text
    assert "step: 20" in text and "committed steps: 10, 20" in text
    assert _row(text, "embed") == ["embed", "(32, 16)", "float32", "mesh(data=2, fsdp=2, tensor=2) P(fsdp, tensor)"]
    assert _row(text, "blocks/1/w") == [
        "blocks/1/w",
        "(16, 16)",
        "float32",
        "mesh(data=2, fsdp=2, tensor=2) P(None, tensor)",
    ]
    assert _row(text, "scale")[1:3] == ["(16,)", "bfloat16"]
    assert _row(text, "count")[1:3] == ["()", "int32"]
    config_json = text.split("config:\n", 1)[1].split("\n\nextra:", 1)[0]
    assert json.loads(config_json) == CONFIG
    assert json.loads(text.split("extra:\n", 1)[1]) == {"cursor": 7}


def test_describe_writes_nothing(saved):
    directory, _ = saved

    def snapshot() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*")} | {".": directory.stat().st_mtime_ns}

    before = snapshot()
    describe(directory)
    assert snapshot() == before


def test_describe_an_older_step_and_without_opt_state(saved):
    directory, _ = saved
    text = describe(directory, 10)
    assert "step: 10" in text and "items: config, params" in text
    assert json.loads(text.split("config:\n", 1)[1].split("\n\nextra:", 1)[0]) == {"model": {"width": 8}}
    assert "opt_state:" not in describe(directory, opt_state=False)
    with pytest.raises(CheckpointNotFoundError, match="step 15 is not committed"):
        describe(directory, 15)


def test_describe_reports_missing_and_empty_directories(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        describe(tmp_path / "nope")
    with pytest.raises(CheckpointNotFoundError, match="no committed checkpoint"):
        describe(tmp_path)


def _inspect(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "launch.inspect", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_inspect_cli_prints_the_description(saved):
    directory, _ = saved
    result = _inspect(f"--ckpt={directory}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == describe(directory)
    assert result.stderr == ""
    older = _inspect(f"--ckpt={directory}", "--step=10", "--noopt_state")
    assert older.returncode == 0 and older.stdout == describe(directory, 10, opt_state=False)


def test_inspect_cli_fails_cleanly_on_a_missing_directory(tmp_path):
    result = _inspect(f"--ckpt={tmp_path / 'typo'}")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: checkpoint directory {tmp_path / 'typo'} does not exist"
    assert result.stdout == ""
