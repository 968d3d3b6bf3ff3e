"""benchmarks/device_check.sh --smoke runs end to end on CPU and writes every figure (never asserts speed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_smoke_writes_every_figure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    env["JAX_PLATFORMS"] = "cpu"
    cmd = ["bash", "benchmarks/device_check.sh", "--smoke"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "device_check.json").read_text())
    assert got["smoke"] is True
    for key in ("matmul_tflops", "decode_tiny", "tree_tiny", "ppm_scoring_tiny", "sft_step_tiny", "decode_tiny_large"):
        assert key in got, key
    assert got["decode_tiny"]["tokens_per_s"] > 0 and got["decode_tiny"]["roofline_share"] > 0
    assert got["tree_tiny"]["prefilled_over_unique"] >= 1.0  # every unique token is prefilled at least once
    assert got["sft_step_tiny"]["mfu"] > 0 and got["ppm_scoring_tiny"]["texts_per_s"] > 0
