"""Bad input to the `launch/` commands: each case exits with status 2 and one line `error: ...` naming the culprit
(key, file, record or step), prints no traceback, and leaves the workdir as it was (or does not create it).

Every case fails before any heavy work (one short subprocess each, no model training); the stage rules behind a
corrected rerun and a divergence are checked in-process on `Stages`.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers_launch import assert_refused

from rstar_jax.evolve.stages import StageDiverged, StageRefused, Stages
from rstar_jax.train import NonFiniteError
from rstar_jax.workdir import WorkdirBusy, WorkdirLock

ROOT = pathlib.Path(__file__).resolve().parents[1]
MICRO = "--config=configs/micro.py"
HF_CONFIG = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}


def _launch(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"launch.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _snapshot(path: pathlib.Path) -> dict[str, bytes] | None:
    """Every file and directory under `path` (directories as b''), or None when `path` does not exist."""
    if not path.exists():
        return None
    return {str(p.relative_to(path)): (b"" if p.is_dir() else p.read_bytes()) for p in sorted(path.rglob("*"))}


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _case_files(tmp: pathlib.Path) -> dict[str, str]:
    return {
        "bad_record": str(_write(tmp / "bad.jsonl", '{"question": "1+1?", "answer": "2"}\n{"question": ""}\n')),
        "empty": str(_write(tmp / "empty.jsonl", "")),
        "no_weights": str(_write(tmp / "noweights" / "config.json", json.dumps(HF_CONFIG)).parent),
        "bad_hf_config": str(_write(tmp / "badcfg" / "config.json", '{"model_type": "llama",').parent),
        "no_config": str(_write(tmp / "nocfg" / "README", "no config.json here").parent),
        "a_file": str(_write(tmp / "a_file", "x")),
        "broken_config": str(_write(tmp / "broken.py", "def get_config(:\n")),
        "good": str(_write(tmp / "good.jsonl", '{"question": "1+1?", "answer": "2"}\n')),
    }


NO_READING = "--config.toy_model.read_per_band=0"
EVOLVE_CASES = [
    # (case id, extra args ({name} = a file from _case_files), culprits the message must name)
    ("negative", ["--config.search.rollouts=-3"], ["config.search.rollouts = -3"]),
    ("zero_timeout", ["--config.execution.timeout_s=0"], ["config.execution.timeout_s"]),
    ("zero_band", ["--config.toy.train_per_band=0"], ["config.toy.train_per_band"]),
    ("benchmark_name", ["--config.data.eval_benchmarks=('math5000',)"], ["math5000"]),
    ("decay", ["--config.sft.decay=cosin"], ["config.sft.decay", "cosin"]),
    ("compute_dtype", ["--config.ppm.compute_dtype=bfloat15"], ["config.ppm.compute_dtype"]),
    ("model_dtype", ["--config.model.dtype=float8"], ["config.model.dtype"]),
    ("misspelt", ["--config.search.rolouts=3"], ["config.search.rolouts", "config.search.rollouts"]),
    (
        "missing_train_file",
        ["--config.data.train_file=/no/such.jsonl", "--noconfig.run_rounds", NO_READING],
        ["/no/such.jsonl"],
    ),
    (
        "bad_record",
        ["--config.data.train_file={bad_record}", "--noconfig.run_rounds", NO_READING],
        ["bad.jsonl:2", "answer"],
    ),
    ("empty_train_file", ["--config.data.train_file={empty}", "--noconfig.run_rounds", NO_READING], ["empty.jsonl"]),
    ("train_file_no_base", ["--config.data.train_file={good}", NO_READING], ["config.model.base"]),
    ("base_missing", ["--config.model.base=/no/model", NO_READING], ["config.model.base", "/no/model"]),
    ("base_no_config", ["--config.model.base={no_config}", NO_READING], ["config.model.base", "config.json"]),
    ("base_bad_config", ["--config.model.base={bad_hf_config}", NO_READING], ["badcfg/config.json"]),
    ("base_no_weights", ["--config.model.base={no_weights}", NO_READING], ["config.model.base", "no weights"]),
    ("bootstrap", ["--config.model.bootstrap=/no/policy"], ["config.model.bootstrap", "/no/policy"]),
    (
        "benchmark_dir",
        ["--config.data.eval_benchmarks=('math500',)", "--config.data.benchmark_dir=/no/bench"],
        ["config.data.benchmark_dir", "/no/bench"],
    ),
    ("first_round_2", ["--config.first_round=2"], ["config.first_round = 2", "round_1/sft/manifest.json"]),
    ("config_missing", ["--config=configs/nope.py"], ["configs/nope.py"]),
    ("config_broken", ["--config={broken_config}"], ["broken.py"]),
    ("config_broken_override", ["--config={broken_config}", "--config.seed=1"], ["broken.py"]),
]


@pytest.mark.parametrize(("case", "args", "culprits"), EVOLVE_CASES, ids=[c[0] for c in EVOLVE_CASES])
def test_evolve_refuses_bad_input_before_any_work(case, args, culprits, tmp_path):
    files = _case_files(tmp_path)
    workdir = tmp_path / "wd"
    proc = _launch("evolve", MICRO, *(a.format(**files) for a in args), f"--config.workdir={workdir}")
    assert_refused(proc, *culprits)
    assert not workdir.exists(), f"{case}: the refused run created its workdir"


def test_ablate_refuses_an_unfinished_round_before_touching_the_workdir(tmp_path):
    workdir = tmp_path / "wd"
    proc = _launch("ablate", MICRO, f"--config.workdir={workdir}", "--round=2")
    assert_refused(proc, "--round=2", "round_2/data/manifest.json", "config.last_round >= 2")
    assert not workdir.exists(), "the refused ablation created its workdir"


def test_empty_and_unusable_workdirs(tmp_path):
    assert_refused(_launch("evolve", MICRO, "--config.workdir="), "config.workdir")
    a_file = _case_files(tmp_path)["a_file"]
    assert_refused(_launch("evolve", MICRO, f"--config.workdir={a_file}"), "config.workdir", "not a directory")
    assert pathlib.Path(a_file).read_text() == "x"


def test_a_busy_workdir_is_refused_and_untouched(tmp_path):
    workdir = tmp_path / "wd"
    with WorkdirLock(workdir):
        before = _snapshot(workdir)
        proc = _launch("evolve", MICRO, f"--config.workdir={workdir}")
        assert_refused(proc, f"in use by pid {os.getpid()}")
        assert _snapshot(workdir) == before
        with pytest.raises(WorkdirBusy):  # a second flock in the same process is refused too
            WorkdirLock(workdir).acquire()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time\nfrom rstar_jax.workdir import WorkdirLock\n"
            f"WorkdirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusy, match=f"pid {holder.pid}"):
        WorkdirLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = WorkdirLock(tmp_path).acquire()  # the kernel dropped the dead process's flock
    assert (tmp_path / WorkdirLock.NAME).read_text().strip() == str(os.getpid())
    lock.release()


def test_a_refused_rerun_changes_nothing(tmp_path):
    workdir = tmp_path / "wd"
    common = [MICRO, f"--config.workdir={workdir}", "--noconfig.run_rounds", "--config.toy.train_per_band=1"]
    first = _launch("evolve", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _snapshot(workdir)
    proc = _launch("evolve", *common, "--config.toy.train_per_band=2")
    assert_refused(proc, "toy.train_per_band: 1 -> 2", "problems/manifest.json")
    assert _snapshot(workdir) == before, "the refused run wrote something (config.json, logs, directories)"
    verbose = _launch("evolve", *common, "--config.toy.train_per_band=2", "--verbose")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: ")
    assert _snapshot(workdir) == before


_ORBAX_SAVE = """
import sys
import numpy as np
from pathlib import Path
from absl import logging
from rstar_jax import cli
from rstar_jax.workdir import setup_logging

def main(argv):
    setup_logging(Path(sys.argv[1]) / "logs", "save")
    from rstar_jax.checkpoint import Checkpointer
    with Checkpointer(Path(sys.argv[1]) / "ckpt", async_save=False) as ckpt:
        ckpt.save(1, params={"w": np.ones(3, np.float32)})
    logging.info("saved step 1")
    raise FileNotFoundError("no such file: later.json")

cli.run(main)
"""


def _info_sources(stderr: str) -> set[str]:
    """The source files of the absl INFO lines (`I1205 14:13:18.62 123 file.py:12] ...`) in `stderr`."""
    return {line.split("]")[0].split()[-1].split(":")[0] for line in stderr.splitlines() if line[:1] == "I"}


def test_the_console_shows_no_library_info_lines(tmp_path):
    """One orbax save then a user error: orbax's ~35 INFO lines (and JAX's backend probing) and the error's
    traceback go to the log file only; `--verbose` lets them through to the console."""
    script = _write(tmp_path / "save.py", _ORBAX_SAVE)
    quiet = subprocess.run([sys.executable, str(script), str(tmp_path / "q")], cwd=ROOT, capture_output=True, text=True)
    assert_refused(quiet, "later.json")  # nothing else on the console: no INFO line, no traceback
    log = (tmp_path / "q" / "logs" / "save.log").read_text()
    assert "checkpoint_manager.py" in log and "saved step 1" in log
    assert "Traceback" in log and "error: no such file: later.json" in log  # the log keeps the traceback
    loud = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "v"), "--verbose"], cwd=ROOT, capture_output=True, text=True
    )
    assert loud.returncode == 2 and "checkpoint_manager.py" in _info_sources(loud.stderr), loud.stderr[-3000:]
    assert "Traceback" in loud.stderr


def test_train_refuses_bad_data_and_model(tmp_path):
    files = _case_files(tmp_path)
    common = [MICRO, "--kind=sft", f"--out={tmp_path / 'out'}", f"--config.workdir={tmp_path / 'wd'}"]
    data = _write(tmp_path / "sft.json", '[{"query": "q", "response": "r", "id": "p0"}]')
    cases = [
        ([f"--data={tmp_path / 'none.json'}", f"--model={files['no_weights']}"], ["none.json"]),
        ([f"--data={files['bad_record']}", f"--model={files['no_weights']}"], ["bad.jsonl", "not valid JSON"]),
        ([f"--data={data}", f"--model={files['no_config']}"], ["--model=", "config.json"]),
    ]
    for args, culprits in cases:
        assert_refused(_launch("train", *common, *args), *culprits)
    assert not (tmp_path / "wd").exists() and not (tmp_path / "out").exists()


def test_inspect_names_the_step_and_file_and_hints_at_checkpoints(tmp_path):
    from rstar_jax.checkpoint import Checkpointer

    ckpt = tmp_path / "run" / "checkpoints"
    with Checkpointer(ckpt, async_save=False) as c:
        for step in (1, 2):
            c.save(step, params={"w": np.ones((2, 3), np.float32)}, extra={"step": step})
    assert_refused(_launch("inspect", f"--ckpt={tmp_path / 'run'}"), f"--ckpt={ckpt}")
    meta = ckpt / "2" / "params" / "_METADATA"
    meta.write_bytes(meta.read_bytes()[:20])
    assert_refused(_launch("inspect", f"--ckpt={ckpt}"), "step 2", str(meta))
    assert_refused(_launch("inspect", f"--ckpt={ckpt}", "--step=7"), "step 7")


def test_a_stage_that_failed_before_any_output_reruns_with_new_inputs(tmp_path):
    stages = Stages()

    def fails():
        (tmp_path / "s" / "run").mkdir(parents=True)  # an empty directory is not output
        raise RuntimeError("bad setting found before the first step")

    with pytest.raises(RuntimeError):
        stages.run(tmp_path / "s", "round_1/trees", {"x": 1}, fails)
    out = stages.run(tmp_path / "s", "round_1/trees", {"x": 2}, lambda: {"counts": {"n": 1}})
    assert out["counts"] == {"n": 1}

    def partial():
        _write(tmp_path / "t" / "trees.jsonl", "{}\n")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        stages.run(tmp_path / "t", "round_1/trees", {"x": 1}, partial)
    with pytest.raises(StageRefused, match="x: 1 -> 2"):  # real output: kept unless forced
        stages.run(tmp_path / "t", "round_1/trees", {"x": 2}, lambda: {})


def test_a_diverged_stage_names_step_and_key_and_reruns_with_a_lower_rate(tmp_path):
    stages = Stages()

    def diverges():
        _write(tmp_path / "sft" / "run" / "metrics.jsonl", '{"step": 3}\n')
        raise NonFiniteError("rstar_jax/train/loop.py: step 4: non-finite loss=nan or grad_norm=nan")

    with pytest.raises(StageDiverged, match=r"round_2/sft.*step 4.*config\.sft\.learning_rate") as err:
        stages.run(tmp_path / "sft", "round_2/sft", {"lr": 1e6}, diverges)
    assert isinstance(err.value, FloatingPointError)
    out = stages.run(tmp_path / "sft", "round_2/sft", {"lr": 1e-3}, lambda: {"counts": {"ok": 1}})
    assert out["counts"] == {"ok": 1}
    assert not (tmp_path / "sft" / "run").exists(), "the diverged attempt's files were discarded"
    with pytest.raises(StageDiverged, match=r"config\.pretrain\.learning_rate"):
        stages.run(tmp_path / "base", "base", {}, diverges)
    with pytest.raises(StageDiverged, match=r"round_4/orm.*lower config\.ppm\.learning_rate and"):
        stages.run(tmp_path / "orm", "round_4/orm", {}, diverges)  # the ablation's ORM trains with `ppm`


def test_launchers_check_files_before_importing_jax():
    """`launch.evolve` and `launch.ablate` run the preflight before jax loads (about 3 s): importing one of them and
    the preflight module, and setting the compile cache, must not import jax or flax."""
    for launcher in ("launch.evolve", "launch.ablate"):
        code = (
            f"import sys, {launcher}, rstar_jax.evolve.inputs\n"
            "from rstar_jax import xla_env\n"
            "xla_env.use_compile_cache('/tmp/rstar_probe_cache')\n"
            "print(sorted(m for m in ('jax', 'flax', 'transformers') if m in sys.modules))"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]", (launcher, proc.stdout)
