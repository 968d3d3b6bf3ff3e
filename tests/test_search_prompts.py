"""Round 1's few-shot prompt (rstar_reference.md Part B §2.2): its layout, the per-problem seeded shuffle, clear errors
for missing or malformed files, the driver (policy prompted with it, PPM with the SFT template) and round 1's trees
stage (a model gets it, the toy teacher and `bootstrap_shots=0` the SFT template)."""

import json

import pytest

from rstar_jax.config import ConfigError, EvolveConfig, ModelSetup, RunConfig, SearchConfig
from rstar_jax.data import Problem
from rstar_jax.devices import run_mesh
from rstar_jax.evolve import context, inputs, round_trees
from rstar_jax.evolve.model_cache import bootstrap_prompt
from rstar_jax.evolve.stages import Stages
from rstar_jax.search import BatchSearch, SearchMode, TreeKernels
from rstar_jax.search.prompts import PROMPT_FILE, SHOTS_FILE, FewShotPrompt, default_reference_dir, sft_prompt
from rstar_jax.search.steps import build_prompt
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy
from rstar_jax.workdir import RunDir

SUFFIX = "Now! It's your turn.\nQuestion: {input}"


def _files(tmp_path, shots=("SHOT-A", "SHOT-B", "SHOT-C"), prompt=None):
    prompt = {"pot_format_instructions": "INSTR", "pot_suffix": SUFFIX} if prompt is None else prompt
    (tmp_path / PROMPT_FILE).write_text(json.dumps(prompt), encoding="utf-8")
    (tmp_path / SHOTS_FILE).write_text(json.dumps(list(shots)), encoding="utf-8")
    return tmp_path


def test_layout_as_the_reference_prompt_wrap(tmp_path):
    fs = FewShotPrompt.load(_files(tmp_path), 2)
    a, b = fs.examples(7)
    expected = f"INSTR\nThe following are 2 demonstration examples.\n{a}\n{b}\n\nNow! It's your turn.\nQuestion: Q?\n"
    assert fs("Q?", [], 7) == expected
    assert (
        fs("Q?", ["<code>\nx = 1\n<end_of_step>", "\n\nprint(x)"], 7)
        == expected + "<code>\nx = 1\n<end_of_step>\n\nprint(x)"
    )
    one = FewShotPrompt.load(tmp_path, 1)  # the reference's num_few_shot == 1: always the second example
    assert {one("Q", [], s) for s in range(5)} == {
        "INSTR\nThe following is a demonstration example.\nSHOT-B\n\nNow! It's your turn.\nQuestion: Q\n"
    }


def test_shots_are_shuffled_per_problem_seed(tmp_path):
    fs = FewShotPrompt.load(_files(tmp_path), 2)
    assert all(fs.examples(s) == fs.examples(s) for s in range(20))  # deterministic per seed
    orders = {tuple(fs.examples(s)) for s in range(40)}
    assert len(orders) == 6  # every ordered pair of 3 shots occurs across problems
    again = FewShotPrompt.load(tmp_path, 2)
    assert [again.examples(s) for s in range(10)] == [fs.examples(s) for s in range(10)]  # a rerun: the same


def test_missing_and_malformed_files_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / PROMPT_FILE}.*config.data.reference_dir"):
        FewShotPrompt.load(tmp_path, 2)
    _files(tmp_path, prompt={"pot_format_instructions": "I"})
    with pytest.raises(ValueError, match=f"{PROMPT_FILE}: expected a JSON object with string fields"):
        FewShotPrompt.load(tmp_path, 2)
    _files(tmp_path, prompt={"pot_format_instructions": "I", "pot_suffix": "no slot"})
    with pytest.raises(ValueError, match="pot_suffix has no '{input}'"):
        FewShotPrompt.load(tmp_path, 2)
    _files(tmp_path, shots=("only",))
    with pytest.raises(ValueError, match=f"{SHOTS_FILE}: 1 examples; config.evolve.bootstrap_shots = 2"):
        FewShotPrompt.load(tmp_path, 2)
    (tmp_path / SHOTS_FILE).write_text("[not json", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{SHOTS_FILE}: not valid JSON"):
        FewShotPrompt.load(tmp_path, 2)


def test_the_reference_files_when_present():
    directory = default_reference_dir()
    if not (directory / PROMPT_FILE).is_file():
        pytest.skip(f"no reference prompt files in {directory}")
    prompt = FewShotPrompt.load(None, 2)("What is 2 + 2?", [], 3)
    assert prompt.startswith("You are a powerful agent with broad math knowledge")
    assert "The following are 2 demonstration examples.\nQuestion: " in prompt
    assert prompt.count("<end_of_answer>") == 3  # two examples, and the template's own
    assert prompt.endswith("<end_of_answer>\n\nNow! It's your turn.\nQuestion: What is 2 + 2?\n")


def test_driver_prompts_the_policy_with_it_and_the_ppm_with_the_sft_template(tmp_path):
    fs = FewShotPrompt.load(_files(tmp_path), 2)
    problem = Problem("fs/1", "What is 1 + 1?", "2")
    cfg = SearchConfig(rollouts=2, samples_per_expansion=3, max_depth=3, batch_problems=1)
    policy, ppm = RandomStepPolicy(weights=(4.0, 1.0, 0.0, 0.5, 0.0, 0.0)), HashPPM()
    search = BatchSearch(
        [problem], cfg, SearchMode.PPM_AUGMENTED, policy, FakeExecutor(), BoxGrader(), ppm, 5, TreeKernels.build(cfg),
        prompt=fs,
    ).run_rollouts()  # fmt: skip
    head = fs(problem.question, [], search.seeds[0])
    prompts = [p for call in policy.calls for p in call]
    assert len(prompts) > 1 and all(p.startswith(head) for p in prompts)
    texts = [t for call in ppm.calls for t in call]
    assert texts and all(t.startswith(build_prompt(problem.question, [])) and "INSTR" not in t for t in texts)


def _config(tmp_path, **model):
    return RunConfig(
        workdir=str(tmp_path / "wd"),
        progress_bars=False,
        model=ModelSetup(**model),
        search=SearchConfig(rollouts=1, samples_per_expansion=2, max_depth=3, batch_problems=4),
        evolve=EvolveConfig(bootstrap_rollouts=1),
    )


def test_bootstrap_prompt_is_few_shot_only_for_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RSTAR_REFERENCE_DIR", str(_files(tmp_path)))
    assert bootstrap_prompt(_config(tmp_path)) is sft_prompt  # the toy teacher
    assert isinstance(bootstrap_prompt(_config(tmp_path, endpoint="http://h:8000/v1")), FewShotPrompt)
    assert isinstance(bootstrap_prompt(_config(tmp_path, bootstrap="/ckpt/policy")), FewShotPrompt)
    cfg = _config(tmp_path, endpoint="http://h:8000/v1")
    cfg.evolve.bootstrap_shots = 0
    assert bootstrap_prompt(cfg) is sft_prompt
    cfg = _config(tmp_path, endpoint="http://h:8000/v1")
    cfg.data.reference_dir = str(tmp_path / "elsewhere")  # the config key wins over the environment
    with pytest.raises(ConfigError, match=r"config.data.reference_dir = '.*elsewhere'.*mcts_prompt.json"):
        inputs._check_bootstrap_prompt(cfg)


def test_round1_trees_stage_uses_it_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RSTAR_REFERENCE_DIR", str(_files(tmp_path)))
    cfg = _config(tmp_path, endpoint="http://h:8000/v1")
    policy = RandomStepPolicy()
    monkeypatch.setattr(round_trees, "bootstrap_policy", lambda cfg, train, models: policy)
    train = [Problem(f"fs/{i}", f"Question {i}?", "1") for i in range(3)]
    run_dir = RunDir.create(cfg.workdir, [1])
    ctx = context.RoundContext(
        cfg=cfg, run_dir=run_dir, train=train, test=[], problems_digest="p", base_dir=tmp_path, base_digest="b",
        executor=FakeExecutor(), grader=BoxGrader(), stages=Stages(), models=None,
        mesh=run_mesh(cfg.mesh),
    )  # fmt: skip
    round_trees.search_trees(ctx, 1)
    prompts = [p for call in policy.calls for p in call]
    assert prompts and all(p.startswith("INSTR\nThe following are 2 demonstration examples.\n") for p in prompts)
    manifest = json.loads((run_dir.round(1).trees / "manifest.json").read_text())
    assert manifest["inputs"]["prompt"]["few_shot"] == 2
