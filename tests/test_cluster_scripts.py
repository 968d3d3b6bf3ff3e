"""The cluster scripts, dry-run: flags parsed, the distributed settings resolved from the environment, no launch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "DRY_RUN": "1", **env}
    cmd = ["bash", f"launch/cluster/{script}", "--config.compile_cache=", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "script, env",
    [
        ("slurm_round2.sh", {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "TENSOR": "2"}),
        ("tpu_round2.sh", {"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3", "TENSOR": "2"}),
    ],
)
def test_scripts_parse_their_flags_and_leave_the_cluster_to_jax(script, env):
    out = _dry_run(script, env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["distributed"] == {"coordinator_address": None, "num_processes": None, "process_id": None}
    assert got["mesh"] == {"data": 1, "fsdp": -1, "tensor": 2}


def test_explicit_settings_that_contradict_each_other_stop_naming_the_key():
    args = ["--config.distributed.num_processes=2", "--config.distributed.process_id=3"]
    out = _dry_run("slurm_round2.sh", {}, "--config.distributed.coordinator=h0:1234", *args)
    assert out.returncode == 2 and "config.distributed.process_id = 3" in out.stderr
    out = _dry_run("slurm_round2.sh", {}, "--config.mesh.data=0")
    assert out.returncode == 2 and "config.mesh.data = 0" in out.stderr
