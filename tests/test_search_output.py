"""Tree files: reference schema, real executor end to end, byte-identical reruns, resume, kill -9 mid-run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import Executor
from rstar_jax.search import SearchMode, TreeFile, read_records, run_search
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy, ScriptedToyPolicy
from rstar_jax.toy import generate_problems

REPO = Path(__file__).resolve().parents[1]
REFERENCE_KEYS = {"text", "extra_info", "action", "action_input", "final_answer", "value", "q_value", "visit_count"}


@pytest.fixture(scope="module")
def executor():
    with Executor(timeout_s=5.0, workers=2) as ex:
        yield ex


def _problems(count: int) -> list[Problem]:
    return [Problem(f"out/{i}", f"Question {i}: what is {i % 5}?", str(i % 3)) for i in range(count)]


def test_toy_search_with_the_real_executor_is_reproducible(tmp_path, executor):
    problems = generate_problems("gsm", 3, 0)
    cfg = SearchConfig(rollouts=3, samples_per_expansion=3, max_depth=8, batch_problems=2)
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        run_search(
            problems,
            path,
            cfg=cfg,
            mode=SearchMode.TERMINAL,
            policy=ScriptedToyPolicy(problems, mistake_rate=0.15),
            executor=executor,
            grader=BoxGrader(),
            ppm=None,
            run_seed=11,
            progress=False,
        )
    assert paths[0].read_bytes() == paths[1].read_bytes()
    records = read_records(paths[0])
    assert [r["id"] for r in records] == [p.id for p in problems]
    for record, problem in zip(records, problems, strict=True):
        assert record["answer"] == problem.answer and record["mode"] == "terminal"
        tags = list(record["rstar"])
        assert tags[0] == "0" and all(set(state) >= REFERENCE_KEYS for state in record["rstar"].values())
        assert [t.count(".") for t in tags] == sorted(t.count(".") for t in tags)  # BFS order
        outputs = [s for s in record["rstar"].values() if "<output>" in s["text"]]
        assert outputs and all(s["text"].endswith(f"<output>{s['observation']}<end_of_output>") for s in outputs)
        correct = [s for s in record["rstar"].values() if s["terminal_kind"] == "answer" and s["q_value"] == 1.0]
        assert all(s["answer"] == problem.answer for s in correct)
    assert any(r["best_answer"] == p.answer for r, p in zip(records, problems, strict=True))


def test_different_seeds_give_different_trees(tmp_path):
    cfg = SearchConfig(rollouts=3, samples_per_expansion=3, max_depth=3, batch_problems=4)
    texts = []
    for seed in (1, 2):
        path = tmp_path / f"s{seed}.jsonl"
        run_search(
            _problems(4),
            path,
            cfg=cfg,
            mode=SearchMode.TEST,
            policy=RandomStepPolicy(),
            executor=FakeExecutor(),
            grader=BoxGrader(),
            ppm=HashPPM(),
            run_seed=seed,
            progress=False,
        )
        texts.append([r["rstar"] for r in read_records(path)])
        assert all("answer" not in r for r in read_records(path))  # test mode: no ground truth in the output
    assert texts[0] != texts[1]


def test_resume_skips_finished_problems_and_cuts_a_torn_line(tmp_path):
    cfg = SearchConfig(rollouts=2, samples_per_expansion=2, max_depth=3, batch_problems=3)
    kwargs = dict(
        cfg=cfg,
        mode=SearchMode.TERMINAL,
        executor=FakeExecutor(),
        grader=BoxGrader(),
        ppm=None,
        run_seed=5,
        progress=False,
    )
    full = tmp_path / "full.jsonl"
    run_search(_problems(7), full, policy=RandomStepPolicy(), **kwargs)
    part = tmp_path / "part.jsonl"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(lines[:4]) + lines[4][:25], encoding="utf-8")  # 4 records and a torn fifth
    policy = RandomStepPolicy()
    summary = run_search(_problems(7), part, policy=policy, **kwargs)
    assert summary.skipped == tuple(f"out/{i}" for i in range(4))
    assert summary.searched == ("out/4", "out/5", "out/6")
    asked = {prompt.split(":", 2)[1] for batch in policy.calls for prompt in batch}
    assert all(f"Question {i}" not in " ".join(asked) for i in range(4))
    assert part.read_bytes() == full.read_bytes()
    again = run_search(_problems(7), part, policy=RandomStepPolicy(), **kwargs)
    assert again.searched == () and part.read_bytes() == full.read_bytes()


def test_duplicate_ids_are_rejected(tmp_path):
    problems = [Problem("dup", "Q1", "1"), Problem("dup", "Q2", "2")]
    with pytest.raises(ValueError, match="duplicate problem ids"):
        run_search(
            problems,
            tmp_path / "x.jsonl",
            cfg=SearchConfig(),
            mode=SearchMode.TERMINAL,
            policy=RandomStepPolicy(),
            executor=FakeExecutor(),
            grader=BoxGrader(),
            ppm=None,
            run_seed=0,
        )


_CHILD = textwrap.dedent(
    """
    import sys, time
    from rstar_jax.config import SearchConfig
    from rstar_jax.data import Problem
    from rstar_jax.search import SearchMode, run_search
    from rstar_jax.testing import BoxGrader, FakeExecutor, RandomStepPolicy

    class SlowPolicy(RandomStepPolicy):
        def generate(self, prompts, n, stop, max_tokens, seed):
            with open(sys.argv[2], "a") as log:
                log.write("".join(p.split(":", 2)[1].split("?")[0] + "\\n" for p in prompts))
            time.sleep(float(sys.argv[3]))
            return super().generate(prompts, n, stop, max_tokens, seed)

    problems = [Problem(f"out/{i}", f"Question {i}: what is {i % 5}?", str(i % 3)) for i in range(12)]
    cfg = SearchConfig(rollouts=2, samples_per_expansion=2, max_depth=3, batch_problems=2)
    run_search(problems, sys.argv[1], cfg=cfg, mode=SearchMode.TERMINAL, policy=SlowPolicy(),
               executor=FakeExecutor(), grader=BoxGrader(), ppm=None, run_seed=9, progress=False)
    """
)


def _child(tmp_path: Path, out: Path, log: Path, delay: float) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, str(script), str(out), str(log), str(delay)], env=env)


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    reference = tmp_path / "reference.jsonl"
    assert _child(tmp_path, reference, tmp_path / "ref.log", 0.0).wait(timeout=120) == 0
    out, log = tmp_path / "killed.jsonl", tmp_path / "killed.log"
    proc = _child(tmp_path, out, log, 0.05)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = TreeFile(out).done_ids()
    assert 4 <= len(done_before) < 12
    log.unlink()
    assert _child(tmp_path, out, log, 0.0).wait(timeout=120) == 0
    ids = [r["id"] for r in read_records(out)]
    assert sorted(ids) == sorted(f"out/{i}" for i in range(12)) and len(ids) == len(set(ids))
    asked = set(log.read_text().split("\n")) - {""}
    assert not asked & {f"Question {p.split('/')[1]}" for p in done_before}  # finished ones not recomputed
    assert out.read_bytes() == reference.read_bytes()
    assert json.loads(out.with_name(out.name + ".timings.jsonl").read_text().splitlines()[0])["id"] == "out/0"


def _state(q: float, answer: str | None = None) -> dict:
    return {"terminal_kind": "answer" if answer is not None else "none", "answer": answer, "q_value": q}


def test_best_answer_ties_follow_the_reference_walk():
    """Tied answers: the shallower one, then the one under the higher-Q ancestors (not the first in BFS order)."""
    from rstar_jax.search import best_answer

    rstar = {
        "0": _state(0.0),
        "0.1": _state(-0.5),
        "0.2": _state(0.8),
        "0.1.1": _state(0.9, "A"),  # first tied leaf in BFS order, under the weaker parent
        "0.2.1": _state(0.9, "B"),
    }
    assert best_answer(rstar) == ("B", 0.9)
    # deeper: the grandparents decide (level 2 ties keep level 1's sorted order)
    rstar = {
        "0": _state(0.0),
        "0.1": _state(0.1),
        "0.2": _state(0.6),
        "0.1.1": _state(0.3),
        "0.2.1": _state(0.3),
        "0.1.1.1": _state(0.7, "A"),
        "0.2.1.1": _state(0.7, "B"),
        "0.1.2": _state(0.7, "C"),  # a shallower tie wins over both
    }
    assert best_answer(rstar) == ("C", 0.7)
    del rstar["0.1.2"]
    assert best_answer(rstar) == ("B", 0.7)
    rstar["0.1.1.1"] = _state(0.71, "A")  # a higher Q wins whatever its ancestors
    assert best_answer(rstar) == ("A", 0.71)
    assert best_answer({"0": _state(0.0), "0.1": _state(0.2)}) == (None, None)
