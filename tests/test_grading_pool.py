"""The worker pool: hard time limits, worker replacement, threads, batch API, clean-up at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rstar_jax.grading import GraderPool, answers_match, answers_match_batch

REPO_ROOT = Path(__file__).resolve().parents[1]
POWER_TOWER = "10^{10^{10^{10}}}"


@pytest.fixture
def pool():
    grader_pool = GraderPool(max_workers=2)
    yield grader_pool
    grader_pool.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/status", encoding="ascii") as status:  # a zombie is not alive
        return not any(line.startswith("State:") and "Z" in line for line in status)


def _wait_until_dead(pids: list[int], limit_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def test_fast_path_starts_no_worker(pool):
    assert answers_match("1,000", "1000", pool=pool)
    assert not answers_match("0.33", "\\frac{1}{3}", pool=pool)
    assert answers_match("(B)", "\\text{(B)}", pool=pool)
    assert pool.worker_pids() == []


def test_timeout_kills_and_replaces_the_worker():
    pool = GraderPool(max_workers=1)
    try:
        assert answers_match("(x+1)^2", "x^2+2x+1", pool=pool)
        (old_pid,) = pool.worker_pids()
        assert not answers_match(POWER_TOWER, "5", timeout_s=1.0, pool=pool)
        assert _wait_until_dead([old_pid]) == []
        (new_pid,) = pool.worker_pids()
        assert new_pid != old_pid
        assert answers_match("(x+1)^2", "x^2+2x+1", pool=pool)
    finally:
        pool.close()


def test_answered_verdicts_are_cached_but_timeouts_are_not():
    pool = GraderPool(max_workers=1)
    try:
        assert answers_match("x^2-1", "(x-1)(x+1)", pool=pool)
        pids = pool.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert _wait_until_dead(pids) == []
        assert answers_match("x^2-1", "(x-1)(x+1)", pool=pool)  # from the cache: no live worker needed
        assert not answers_match(POWER_TOWER, "3", timeout_s=0.5, pool=pool)
        before = pool.worker_pids()
        assert not answers_match(POWER_TOWER, "3", timeout_s=0.5, pool=pool)  # checked (and killed) again
        assert _wait_until_dead(before) == []
    finally:
        pool.close()


def test_worker_killed_from_outside_is_replaced(pool):
    assert answers_match("\\sqrt{8}", "2\\sqrt{2}", pool=pool)
    pids = pool.worker_pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert _wait_until_dead(pids) == []
    assert answers_match("\\sqrt{12}", "2\\sqrt{3}", pool=pool)  # a new pair: the cache cannot answer
    assert not set(pool.worker_pids()) & set(pids)


def test_many_threads_get_their_own_answers(pool):
    pairs = [
        ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
        ("(2,1)", "(1,2)", False),
        ("x^2-1", "(x-1)(x+1)", True),
        ("\\frac{1}{2006!}", "\\frac{1}{2004!}", False),
        (POWER_TOWER, "7", False),
        ("1,000", "1000", True),
    ]
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        pred, ref, _ = pairs[i % len(pairs)]
        # Only the tower must time out; the others get room for a loaded CI machine (2 cores, xdist).
        results[i] = answers_match(pred, ref, timeout_s=1.0 if pred == POWER_TOWER else 20.0, pool=pool)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(18)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: pairs[i % len(pairs)][2] for i in range(18)}
    assert len(pool.worker_pids()) <= pool.max_workers


def test_batch_agrees_with_single_checks(pool):
    preds = ["1/2", None, "\\{2,1\\}", "(2,1)", "x=5", "B", "50\\%", "4"]
    refs = ["0.5", "1", "\\{1,2\\}", "(1,2)", "5", ["A", "B"], "0.5", ("\\sqrt{16}", "5")]
    expected = [answers_match(p, r, pool=pool) for p, r in zip(preds, refs, strict=True)]
    assert expected == [True, False, True, False, True, True, True, True]
    assert answers_match_batch(preds, refs, pool=pool) == expected


def test_batch_with_repeated_predictions(pool):
    preds = ["x^2-1", "x^2-1", "x^2-1", "(x-1)(x+1)", None, "x^2-1"]
    refs = ["(x-1)(x+1)", "(x-1)^2", "(x-1)(x+1)", "x^2-1", "x^2-1", ["(x-1)^2", "(x+1)(x-1)"]]
    assert answers_match_batch(preds, refs, pool=pool) == [True, False, True, True, False, True]


def test_batch_rejects_misaligned_inputs(pool):
    with pytest.raises(ValueError, match="grader.py"):
        answers_match_batch(["1", "2"], ["1"], pool=pool)


@pytest.mark.parametrize(("pred", "ref"), [(5, "5"), ("5", {"a": 1}), ("5", [1j]), ("5", b"5")])
def test_bad_types_name_the_module(pool, pred, ref):
    with pytest.raises(TypeError, match="grader.py"):
        answers_match(pred, ref, pool=pool)


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("nan")])
def test_timeout_must_be_positive(pool, timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        answers_match("x", "x+0", timeout_s=timeout_s, pool=pool)
    with pytest.raises(ValueError, match="timeout_s"):
        answers_match_batch(["x"], ["x+0"], timeout_s=timeout_s, pool=pool)


def test_closed_pool_refuses_work():
    pool = GraderPool(max_workers=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        answers_match("x+1", "1+x", pool=pool)


def test_invalid_pool_size():
    with pytest.raises(ValueError, match="max_workers"):
        GraderPool(max_workers=0)


def _run_child(body: str) -> list[int]:
    """Run `body` in a fresh interpreter that prints its default pool's worker pids; return them."""
    script = textwrap.dedent(
        """
        import os, sys
        from rstar_jax.grading import answers_match, default_pool
        assert answers_match("x^2-1", "(x-1)(x+1)")
        print(" ".join(map(str, default_pool().worker_pids())), flush=True)
        """
    ) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    return pids


def test_workers_are_stopped_at_interpreter_exit():
    assert _wait_until_dead(_run_child("")) == []


def test_workers_exit_when_the_parent_dies_abruptly():
    assert _wait_until_dead(_run_child("os._exit(0)")) == []
