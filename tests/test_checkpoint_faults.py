"""Checkpointer under faults: kill -9 mid-save, leftover tmp dirs, corrupt steps, failed writes.

The kill test runs a child Python process that saves a stream of ~8 MiB checkpoints; the parent kills it with
SIGKILL while a save is in flight (a `*.orbax-checkpoint-tmp*` directory exists) and then restores.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from rstar_jax.checkpoint import CheckpointCorruptError, Checkpointer, committed_steps

REPO = Path(__file__).resolve().parents[1]
TMP_SUFFIX = ".orbax-checkpoint-tmp"


def params_for(step: int) -> dict:
    """Small params whose every value encodes `step`."""
    return {"w": np.full((4, 8), step, np.float32), "b": {"x": np.arange(3, dtype=np.int32) + step}}


def check_step(restored) -> None:
    want = params_for(restored.step)
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), want["w"])
    np.testing.assert_array_equal(np.asarray(restored.params["b"]["x"]), want["b"]["x"])


def save_steps(directory: Path, steps: range) -> None:
    with Checkpointer(directory, max_to_keep=None) as ckpt:
        for step in steps:
            ckpt.save(step, params=params_for(step), config={"step": step})


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from rstar_jax.checkpoint import Checkpointer

    with Checkpointer(sys.argv[1], max_to_keep=2, async_save=True) as ckpt:
        first = (ckpt.latest_step() or 0) + 1
        for step in range(first, first + 100_000):
            params = {"w": np.full((2048, 1024), step, np.float32), "b": np.full((7,), step, np.int32)}
            ckpt.save(step, params=params, config={"step": step})
    """
)


def committed_names(directory: Path) -> list[int]:
    """Finalized steps as orbax sees them on a local disk: a tmp directory renamed to its step number."""
    names = os.listdir(directory) if directory.exists() else []
    return [int(n) for n in names if n.isdigit()]


def run_and_kill_mid_save(directory: Path, after_step: int, delay_s: float) -> None:
    """Starts the saving child, waits until it committed a step > `after_step` and has a save in flight
    (a tmp dir exists), waits `delay_s` more, then SIGKILLs it."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            in_flight = directory.exists() and any(TMP_SUFFIX in n for n in os.listdir(directory))
            if in_flight and max(committed_names(directory), default=0) > after_step:
                time.sleep(delay_s)
                os.kill(child.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
    finally:
        if child.poll() is None and not killed:
            os.kill(child.pid, signal.SIGKILL)
        _, stderr = child.communicate(timeout=30)
    assert killed, f"child never had a save in flight; exit {child.returncode}: {stderr[-2000:]!r}"
    assert child.returncode == -signal.SIGKILL


def test_kill_9_during_saves_always_leaves_a_restorable_checkpoint(tmp_path):
    directory = tmp_path / "ckpt"
    rng = np.random.default_rng(0)
    latest = 0
    for round_index in range(3):
        delay = 0.0 if round_index == 0 else float(rng.uniform(0.0, 0.03))
        run_and_kill_mid_save(directory, latest, delay)
        with Checkpointer(directory, create=False, max_to_keep=2) as ckpt:
            steps = ckpt.steps()
            assert steps and steps[-1] > latest, f"round {round_index}: no new committed step in {steps}"
            for step in steps:
                restored = ckpt.restore(step)
                assert restored.step == step and restored.config == {"step": step}
                np.testing.assert_array_equal(np.asarray(restored.params["b"]), np.full((7,), step, np.int32))
                w = np.asarray(restored.params["w"])
                assert w.shape == (2048, 1024) and w.min() == w.max() == step
            latest = steps[-1]
    # A writable Checkpointer clears the killed saves' tmp dirs before its first save.
    with Checkpointer(directory, max_to_keep=2) as ckpt:
        ckpt.save(latest + 1, params={"w": np.zeros((2, 2), np.float32)})
        assert ckpt.latest_step() == latest + 1
    assert not [n for n in os.listdir(directory) if TMP_SUFFIX in n], "tmp dirs were not cleaned up"


def test_leftover_tmp_dirs_are_ignored_and_cleaned(tmp_path):
    save_steps(tmp_path, range(1, 3))
    junk = tmp_path / f"3{TMP_SUFFIX}-1700000000"  # even a complete, readable step counts only once renamed
    shutil.copytree(tmp_path / "2", junk)
    assert committed_steps(tmp_path) == [1, 2]
    assert junk.exists(), "a read-only look must not delete anything"
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 2
        check_step(ckpt.restore())
        ckpt.save(3, params=params_for(3))  # orbax finishes its background tmp cleanup before a save
        assert not junk.exists()
        assert ckpt.steps() == [1, 2, 3]
        check_step(ckpt.restore())


def test_directory_with_only_tmp_dirs_has_no_checkpoint(tmp_path):
    (tmp_path / f"5{TMP_SUFFIX}-1700000000").mkdir()
    assert committed_steps(tmp_path) == []
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() is None


def zero_array_data(step_dir: Path) -> None:
    """Truncates every OCDBT data file of the params item (what a torn write can leave)."""
    files = [p for p in (step_dir / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, f"no array data files under {step_dir}"
    for path in files:
        path.write_bytes(b"")


# When tensorstore fails to decode torn data, orbax's restore raises (which is what these tests check), and a
# late tensorstore callback may hit orbax's already-closed asyncio loop; pytest reports that as "unraisable".
orbax_restore_failure_noise = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CORRUPTIONS = {
    "array data zeroed": zero_array_data,
    "tree metadata deleted": lambda step_dir: (step_dir / "params" / "_METADATA").unlink(),
    "step metadata garbled": lambda step_dir: (step_dir / "_CHECKPOINT_METADATA").write_text("{not json"),
}


@orbax_restore_failure_noise
@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_latest_falls_back_to_previous_step(tmp_path, caplog, corrupt):
    save_steps(tmp_path, range(1, 4))
    corrupt(tmp_path / "3")
    with caplog.at_level(logging.WARNING, logger="rstar_jax.checkpoint"), Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore()
        assert restored.step == 2 and restored.config == {"step": 2}
        check_step(restored)
        assert "STEP 3" in caplog.text and "UNREADABLE" in caplog.text
        # The bad step is moved aside, not deleted, and no longer blocks the next save.
        assert ckpt.steps() == [1, 2]
        assert [p.name for p in tmp_path.glob("3.corrupt-*")]
        assert ckpt.save(3, params=params_for(3))
        check_step(ckpt.restore())


@orbax_restore_failure_noise
def test_explicit_corrupt_step_raises_without_fallback(tmp_path):
    save_steps(tmp_path, range(1, 3))
    CORRUPTIONS["array data zeroed"](tmp_path / "2")
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointCorruptError, match="step 2"):
            ckpt.restore(2)
        assert ckpt.steps() == [1, 2]


@orbax_restore_failure_noise
def test_every_step_corrupt_raises_and_moves_nothing(tmp_path):
    save_steps(tmp_path, range(1, 3))
    for step in (1, 2):
        CORRUPTIONS["array data zeroed"](tmp_path / str(step))
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointCorruptError, match="step 2: .*step 1: "):
            ckpt.restore()
        assert ckpt.steps() == [1, 2]


def test_background_write_error_surfaces_and_commits_nothing(tmp_path, monkeypatch):
    save_steps(tmp_path, range(1, 2))

    async def failing_finalize(self):
        raise OSError(f"disk full while committing {self}")

    monkeypatch.setattr(ocp.path.atomicity.AtomicRenameTemporaryPath, "finalize", failing_finalize)
    ckpt = Checkpointer(tmp_path, async_save=True)
    assert ckpt.save(2, params=params_for(2))
    with pytest.raises(OSError, match="disk full"):
        ckpt.wait()
    monkeypatch.undo()
    assert ckpt.latest_step() == 1
    check_step(ckpt.restore())
    ckpt.close()
    assert committed_steps(tmp_path) == [1]
