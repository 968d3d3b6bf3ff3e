"""`rstar_jax.xla_env`: the compile cache and the CPU code generator flag a launcher sets before jax loads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rstar_jax import xla_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    path = tmp_path / "xla_flags.json"
    monkeypatch.setattr(xla_env, "_PROBE_CACHE", path)
    return path


def test_an_unknown_flag_is_refused_by_a_probe_and_the_answer_is_kept(probe_cache, monkeypatch):
    assert xla_env.knows_xla_flag("--xla_rstar_no_such_flag=1") is False
    assert "--xla_rstar_no_such_flag=1" in probe_cache.read_text()
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("probed again instead of reading the cache"))
    assert xla_env.knows_xla_flag("--xla_rstar_no_such_flag=1") is False


def test_the_flag_is_added_once_and_a_users_own_setting_is_kept(probe_cache, monkeypatch):
    monkeypatch.setattr(xla_env, "knows_xla_flag", lambda flag: True)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert xla_env.use_cheap_cpu_codegen()
    assert xla_env.use_cheap_cpu_codegen()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", xla_env.CHEAP_CPU_CODEGEN]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    assert not xla_env.use_cheap_cpu_codegen()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"
    monkeypatch.setattr(xla_env, "knows_xla_flag", lambda flag: False)
    monkeypatch.setenv("XLA_FLAGS", "")
    assert not xla_env.use_cheap_cpu_codegen()
    assert os.environ["XLA_FLAGS"] == ""


def test_a_launcher_process_gets_the_flag_and_runs_with_it(tmp_path):
    """In a fresh process (the launchers' case) the flag lands in XLA_FLAGS before jax loads, and jax runs."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"HOME": str(tmp_path)}
    code = (
        "import os\n"
        "from rstar_jax import xla_env\n"
        "ok = xla_env.use_cheap_cpu_codegen()\n"
        "import jax\n"
        "print(ok, os.environ.get('XLA_FLAGS', ''), float(jax.numpy.ones(3).sum()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ok, *flags, total = proc.stdout.split()
    assert total == "3.0"
    assert (ok == "True") == (xla_env.CHEAP_CPU_CODEGEN in flags)
    assert (tmp_path / ".cache/rstar_jax/xla_flags.json").is_file()
