"""Config tree validation and the command-line checks of launch entry points."""

import dataclasses
import importlib
import pathlib
import subprocess
import sys

import pytest

from rstar_jax import cli
from rstar_jax.config import ConfigError, Decay, DType, RunConfig, ToyBand, UnvisitedRule, to_dict
from rstar_jax.config_validation import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_NAMES = ["tiny", "round1", "round2", "round3", "round4"]


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_shipped_configs_validate_and_document_their_command(name):
    module = importlib.import_module(f"configs.{name}")
    cfg = validate(module.get_config())
    assert isinstance(cfg, RunConfig)
    assert module.__doc__.startswith(f"python -m launch.evolve --config=configs/{name}.py")


def test_paper_rounds_follow_part_a():
    from configs.paper import round_config

    assert round_config(1).search.rollouts == 8
    assert [round_config(r).search.rollouts for r in (2, 3, 4)] == [16, 16, 16]
    assert all(round_config(r).first_round == round_config(r).last_round == r for r in range(1, 5))


def test_an_override_of_one_paper_round_leaves_the_others_alone():
    from configs.paper import round_config

    one = round_config(1)
    one.sft.batch_size, one.ppm.learning_rate = 1, 1.0
    assert (round_config(2).sft.batch_size, round_config(2).ppm.learning_rate) == (8, 7e-6)
    assert round_config(2).sft.batch_size * round_config(2).sft.accum_steps == 128  # the paper: 128 per step
    assert round_config(2).ppm.batch_size * round_config(2).ppm.accum_steps == 512


def test_slots_reject_misspelt_attribute():
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.search.rolouts = 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("search", "rollouts", 0, "config.search.rollouts = 0: must be >= 1"),
        ("search", "c_puct", 0.0, "config.search.c_puct = 0.0: must be > 0"),
        ("search", "temperature", -0.1, "config.search.temperature"),
        ("search", "rollouts", "16", "config.search.rollouts = '16': expected int"),
        ("search", "rollouts", True, "expected int"),
        ("search", "unvisited", "bogus", "one of 'zero', 'inf'"),
        ("grading", "timeout_s", float("nan"), "must be finite"),
        ("toy", "bands", ("gsm", "gsm"), "without repeats"),
        ("toy", "bands", ("gsm", "easy"), "config.toy.bands"),
        ("data", "eval_benchmarks", ("math5000",), "unknown benchmark 'math5000'"),
        ("execution", "workers", -1, "config.execution.workers"),
        ("sft", "decay", "cosin", "config.sft.decay = 'cosin': expected one of 'linear', 'cosine'"),
        ("ppm", "compute_dtype", "bfloat15", "config.ppm.compute_dtype = 'bfloat15': expected one of"),
        ("model", "dtype", "float8", "config.model.dtype = 'float8'"),
        ("toy_model", "heads", 0, "config.toy_model.heads = 0: must be >= 1"),
        ("toy_model", "heads", 3, "config.toy_model.heads = 3: must divide config.toy_model.hidden = 128"),
        ("toy_model", "kv_heads", 3, "config.toy_model.kv_heads = 3: must divide config.toy_model.heads = 4"),
        ("toy_model", "hidden", 20, "config.toy_model.hidden = 20: head_dim = hidden / heads = 5 must be even"),
        (
            "evolve",
            "unsolved_more_rollouts",
            (128, 0),
            "config.evolve.unsolved_more_rollouts = .128, 0.: rollout counts",
        ),
        ("evolve", "unsolved_more_rollouts", 128, "config.evolve.unsolved_more_rollouts = 128: expected a tuple"),
        ("evolve", "pair_min_edit_distance", -1, "config.evolve.pair_min_edit_distance = -1: must be >= 0"),
    ],
)
def test_invalid_values_name_key_and_allowed(section, key, value, message):
    cfg = RunConfig()
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        validate(cfg)


def test_cross_field_rules():
    cfg = RunConfig(first_round=3, last_round=2)
    with pytest.raises(ConfigError, match="last_round"):
        validate(cfg)
    cfg = RunConfig()
    cfg.toy_model.read_per_band = 100
    with pytest.raises(ConfigError, match="needs config.model.base = 'scratch'"):
        validate(cfg)  # the committed toy base is already pretrained
    cfg.model.base = "scratch"
    validate(cfg)  # the toy from scratch: fine
    cfg.model.base = "/models/qwen"
    with pytest.raises(ConfigError, match="config.toy_model.read_per_band = 100"):
        validate(cfg)
    cfg = RunConfig()
    cfg.model.base, cfg.data.train_file = "scratch", "problems.jsonl"
    with pytest.raises(ConfigError, match="only knows the toy domain"):
        validate(cfg)
    cfg = RunConfig()
    cfg.evolve.unsolved_rollouts, cfg.evolve.unsolved_more_rollouts = 0, (128,)
    with pytest.raises(ConfigError, match="config.evolve.unsolved_rollouts = 0, must be > 0"):
        validate(cfg)  # a later search of the still-unsolved problems needs the first one


def test_workdir_and_train_file_rules():
    with pytest.raises(ConfigError, match="config.workdir = ''"):
        validate(RunConfig(workdir=""))
    cfg = RunConfig()
    cfg.data.train_file = "problems.jsonl"
    with pytest.raises(ConfigError, match="needs config.model.base"):
        validate(cfg)
    cfg.run_rounds = False
    validate(cfg)  # data stages only: no model needed


def test_enum_strings_from_files_are_coerced():
    cfg = RunConfig()
    cfg.search.unvisited = "inf"
    cfg.toy.bands = ["gsm", "olympiad"]
    validate(cfg)
    assert cfg.search.unvisited is UnvisitedRule.INF
    assert cfg.toy.bands == (ToyBand.GSM, ToyBand.OLYMPIAD)
    cfg.sft.decay, cfg.sft.compute_dtype = "cosine", "float32"
    validate(cfg)
    assert (cfg.sft.decay, cfg.sft.compute_dtype) == (Decay.COSINE, DType.FLOAT32)


def test_to_dict_is_plain_json():
    d = to_dict(RunConfig())
    assert d["search"]["unvisited"] == "zero"
    assert d["toy"]["bands"] == ["gsm", "math", "olympiad"]
    assert set(d) == {f.name for f in dataclasses.fields(RunConfig)}


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--config.no_such_key=1", "unknown config key 'config.no_such_key'"),
        ("--config.search.rolouts=3", "Did you mean 'config.search.rollouts'"),
        ("--config.search=3", "'config.search' is a section"),
        ("--config.seed.x=3", "'config.seed' is a value"),
        ("--noconfig.search.first_answer_onyl", "unknown config key 'config.search.first_answer_onyl'"),
    ],
)
def test_override_key_check(arg, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.check_override_keys(["prog", "--config=configs/tiny.py", arg])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import ml_collections\ndef get_config():\n    return ml_collections.ConfigDict({'seed': 1})\n", "ConfigDict"),
        ("def get_config():\n    return {'seed': 1}\n", "get_config() returned dict, expected RunConfig"),
        ("def get_config():\n    return None\n", "get_config() returned None, expected RunConfig"),
        (
            "from rstar_jax.config import RunConfig, SearchConfig\n"
            "def get_config():\n    return RunConfig(search=SearchConfig(rolouts=2))\n",
            "TypeError: SearchConfig.__init__() got an unexpected keyword argument 'rolouts'",
        ),
        ("def get_config():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("x = 1\n", "defines no get_config()"),
    ],
)
def test_a_config_file_must_return_a_run_config(body, message, tmp_path, capsys):
    path = tmp_path / "cfg.py"
    path.write_text(body)
    for extra in ([], ["--config.workdir=/tmp/x"]):  # with an override too (ml_collections fails differently)
        with pytest.raises(SystemExit) as e:
            cli.check_config_result(["prog", f"--config={path}", *extra])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: config file {path}: ") and message in err and len(err.splitlines()) == 1, err
    cli.check_config_result(["prog", "--config=configs/micro.py"])  # a good one passes


def test_a_config_file_returning_a_dict_exits_without_traceback(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text("def get_config():\n    return {'seed': 1}\n")
    proc = _evolve(f"--config={path}", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "WARNING" not in proc.stderr
    assert proc.stderr.strip() == f"error: config file {path}: get_config() returned dict, expected RunConfig"


def test_valid_overrides_pass_key_check():
    cli.check_override_keys(
        [
            "prog",
            "--config=configs/tiny.py",
            "--config.search.rollouts=16",
            "--noconfig.search.first_answer_only",
        ]
    )


def test_toy_model_section_is_overridden_by_nested_flags(capsys):
    from absl import flags
    from ml_collections import config_flags

    argv = ["prog", "--config=configs/micro.py", "--config.toy_model.hidden=64", "--config.toy_model.read_per_band=0"]
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", lock_config=False, flag_values=fv, sys_argv=argv)
    cli.check_override_keys(argv)
    fv(argv)
    cfg = validate(holder.value)
    assert (cfg.toy_model.hidden, cfg.toy_model.read_per_band, cfg.toy_model.layers) == (64, 0, 1)
    with pytest.raises(SystemExit):  # the old flat `model.tiny_*` keys are gone
        cli.check_override_keys(["prog", "--config=configs/micro.py", "--config.model.tiny_hidden=64"])
    assert "unknown config key 'config.model.tiny_hidden'" in capsys.readouterr().err


def _evolve(*args, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "launch.evolve", *args, f"--config.workdir={tmp_path / 'wd'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config=configs/tiny.py", "--config.no_such_key=1"], "config.no_such_key"),
        (["--config=configs/tiny.py", "--config.search.rollouts=0"], "config.search.rollouts = 0"),
        (["--config=configs/tiny.py", "--config.search.rollouts=abc"], "config.search.rollouts"),
        (["--config=configs/tiny.py", "--config.search.unvisited=bogus"], "zero|inf"),
        (["--config=configs/round2.py", "--config.search.c_puct=-1"], "config.search.c_puct"),
        (["--config=configs/micro.py", "--config.toy_model.heads=3"], "config.toy_model.heads = 3"),
        (["--config=configs/micro.py", "--config.toy_model.kv_heads=3"], "config.toy_model.kv_heads = 3"),
        (["--config=configs/micro.py", "--config.toy_model.hidden=10"], "config.toy_model.hidden = 10"),
    ],
)
def test_evolve_exits_before_work_naming_the_key(args, message, tmp_path):
    proc = _evolve(*args, tmp_path=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "wd").exists(), "no work (not even the workdir) before validation"


_JIT_ONCE = """
import sys
import jax, jax.numpy as jnp
from rstar_jax import xla_env
xla_env.use_compile_cache(sys.argv[1])
print(jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(5.0)).sum())
"""


def test_compile_cache_is_shared_by_processes(tmp_path):
    cache = tmp_path / "xla"
    runs = [subprocess.run([sys.executable, "-c", _JIT_ONCE, str(cache)], capture_output=True, text=True, cwd=ROOT)]
    assert runs[0].returncode == 0, runs[0].stderr
    entries = sorted(p.name for p in cache.iterdir())
    assert entries  # the first process wrote its compiled program
    runs.append(subprocess.run([sys.executable, "-c", _JIT_ONCE, str(cache)], capture_output=True, text=True, cwd=ROOT))
    assert runs[1].returncode == 0 and runs[1].stdout == runs[0].stdout
    assert sorted(p.name for p in cache.iterdir()) == entries  # the second one loaded it: nothing new to write
    # A torn entry (a process killed while writing) is a warning and a recompile, not a failure.
    for name in entries:
        (cache / name).write_bytes((cache / name).read_bytes()[:10])
    torn = subprocess.run([sys.executable, "-c", _JIT_ONCE, str(cache)], capture_output=True, text=True, cwd=ROOT)
    assert torn.returncode == 0 and torn.stdout == runs[0].stdout, torn.stderr
    assert "persistent compilation cache" in torn.stderr  # it did read the torn entry
