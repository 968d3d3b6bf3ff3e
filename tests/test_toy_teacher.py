"""The scripted bootstrap teacher: canonical solutions, mistakes that bite, rates, determinism, contract, search."""

from __future__ import annotations

import math
import re

import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import ExecStatus, Executor, build_program
from rstar_jax.grading import extract_answer
from rstar_jax.interfaces import FinishReason, Policy
from rstar_jax.search import ProjectGrader, SearchMode, read_records, run_search
from rstar_jax.search.steps import ANSWER_END, CODE_END, STEP_END, build_prompt, derive_seed, with_observation
from rstar_jax.toy import ToySpec, ToyTeacher, generate_toy_splits, solution
from rstar_jax.toy.teacher import NO_ANSWER_STEP

STOPS = (STEP_END, CODE_END, ANSWER_END)
RATES = {"wrong_operand": 0.0, "wrong_operation": 0.0, "code_error": 0.0}
# 10 problems of each band (gsm, math, olympiad)
PROBLEMS = generate_toy_splits(ToySpec(train_per_band=10, test_per_band=0, seed=3))["train"]
_EXPR = re.compile(r"^(\w+) = (.+)$", re.M)
_TOKENS = re.compile(r"//|[-+*]|\w+")


@pytest.fixture(scope="module")
def executor():
    with Executor(timeout_s=5.0, workers=2) as ex:
        yield ex


def _teacher(problems=PROBLEMS, **rates: float) -> ToyTeacher:
    return ToyTeacher(problems, **{**RATES, **rates})


def _follow(teacher: ToyTeacher, problems, executor, n: int = 2):
    """Every problem solved by taking the teacher's first sample at each step, as the search would show it.

    Returns each problem's node texts and the execution result of its `<end_of_code>` step (None if none).
    """
    paths: list[list[str]] = [[] for _ in problems]
    results = [None] * len(problems)
    active = list(range(len(problems)))
    for depth in range(20):
        prompts = [build_prompt(problems[i].question, paths[i]) for i in active]
        seeds = [derive_seed("follow", problems[i].id, depth) for i in active]
        samples = teacher.generate(prompts, n, STOPS, 256, seeds)
        for i, steps in zip(active, samples, strict=True):
            paths[i].append(steps[0].text)
        ran = [i for i in active if paths[i][-1].endswith(CODE_END)]
        for i, result in zip(ran, executor.run_batch([build_program(paths[i]) for i in ran]), strict=True):
            results[i] = result
            paths[i][-1] = with_observation(paths[i][-1], result.observation)
        active = [i for i in active if not paths[i][-1].endswith(ANSWER_END)]
        if not active:
            return paths, results
    raise AssertionError("the teacher never reached an answer step")


def test_bands_are_all_covered():
    assert {p.extra["band"] for p in PROBLEMS} == {"gsm", "math", "olympiad"} and len(PROBLEMS) == 30


def test_error_free_teacher_writes_the_canonical_solution(executor):
    teacher = _teacher()
    assert isinstance(teacher, Policy)
    paths, results = _follow(teacher, PROBLEMS, executor)
    for problem, path, result in zip(PROBLEMS, paths, results, strict=True):
        code = solution.code_steps(problem)
        assert result.ok and result.output.strip() == problem.answer
        expected = [*code[:-1], code[-1] + solution.output_block(result.output), solution.answer_step(problem.answer)]
        assert path == expected
        assert extract_answer(path[-1]) == problem.answer
    # every sample (not only the first) is the canonical step when no mistake is configured
    prompts = [build_prompt(p.question, solution.code_steps(p)[:2]) for p in PROBLEMS]
    for problem, steps in zip(PROBLEMS, teacher.generate(prompts, 5, STOPS, 256, range(30)), strict=True):
        assert {s.text for s in steps} == {solution.code_steps(problem)[2]}


@pytest.mark.parametrize("kind", ["wrong_operand", "wrong_operation"])
def test_wrong_value_mistakes_make_every_final_answer_wrong(executor, kind):
    paths, results = _follow(_teacher(**{kind: 1.0}), PROBLEMS, executor)
    for problem, path, result in zip(PROBLEMS, paths, results, strict=True):
        assert result.ok, (problem.id, result.error)  # wrong values, not crashes
        predicted = extract_answer(path[-1])
        assert predicted is not None and int(predicted) != int(problem.answer), (problem.id, path)
        assert all(step != canon for step, canon in zip(path, solution.code_steps(problem)[:-1], strict=False))


def test_code_errors_raise_at_every_step(executor):
    teacher = _teacher(code_error=1.0)
    problems = PROBLEMS[::2]
    programs = []
    for problem in problems:
        code = solution.code_steps(problem)
        for k in range(len(code)):
            [samples] = teacher.generate([build_prompt(problem.question, code[:k])], 3, STOPS, 256, [k])
            programs += [build_program([*code[:k], s.text]) for s in samples]
    assert len(programs) > 3 * 3 * len(problems)
    for program, result in zip(programs, executor.run_batch(programs), strict=True):
        assert result.status is ExecStatus.EXCEPTION and result.error.startswith("NameError"), program
    # the first step's program fails, and after the failed last code step the answer states no boxed answer
    paths, results = _follow(teacher, problems, executor)
    for path, result in zip(paths, results, strict=True):
        assert not result.ok and path[-1] == NO_ANSWER_STEP and extract_answer(path[-1]) is None
    first = [build_program([path[0]]) for path in paths]
    assert not any(r.ok for r in executor.run_batch(first))


def _code_prompts() -> list[tuple[Problem, int, str]]:
    """(problem, step index, prompt) for every code step of every problem on its canonical path."""
    out = []
    for problem in PROBLEMS:
        code = solution.code_steps(problem)
        out += [(problem, k, build_prompt(problem.question, code[:k])) for k in range(len(code))]
    return out


@pytest.mark.parametrize("kind", ["wrong_operand", "wrong_operation", "code_error"])
def test_single_mistake_rate_is_the_frequency_of_changed_steps(kind):
    items = _code_prompts()
    samples = _teacher(**{kind: 0.3}).generate([p for *_, p in items], 40, STOPS, 256, range(len(items)))
    pairs = zip(items, samples, strict=True)
    changed = [s.text != solution.code_steps(problem)[k] for (problem, k, _), steps in pairs for s in steps]
    assert len(changed) > 5000
    assert abs(sum(changed) / len(changed) - 0.3) < 0.03


def _classify(problem: Problem, k: int, text: str) -> str | None:
    """Which mistake a sample of assignment step k carries, from its text (checked against Python's own eval)."""
    steps = problem.extra["steps"]
    env: dict[str, int] = {}
    for step in steps[: k + 1]:
        env[step["var"]] = eval(step["expr"], {"__builtins__": {}}, dict(env))  # trusted generator output
    if text == solution.code_steps(problem)[k]:
        return None
    var, expr = _EXPR.search(text).groups()
    assert var == steps[k]["var"]
    ops = [t for t in _TOKENS.findall(expr) if not t[0].isalnum()]
    canon_ops = [t for t in _TOKENS.findall(steps[k]["expr"]) if not t[0].isalnum()]
    known = {s["var"] for s in steps[:k]}
    if any(t[0].isalpha() and t not in known for t in _TOKENS.findall(expr)):
        with pytest.raises(NameError):
            eval(expr, {"__builtins__": {}}, {v: env[v] for v in known})
        return "code_error"
    assert eval(expr, {"__builtins__": {}}, {v: env[v] for v in known}) != env[var], text  # the value changed
    return "wrong_operation" if ops != canon_ops else "wrong_operand"


def test_mixed_rates_are_the_frequencies_of_each_mistake():
    rates = {"code_error": 0.1, "wrong_operation": 0.2, "wrong_operand": 0.15}
    items = [(p, k, prompt) for p, k, prompt in _code_prompts() if k < len(p.extra["steps"])]
    items = [(p, k, prompt) for p, k, prompt in items if any(op in p.extra["steps"][k]["expr"] for op in "+-*/")]
    samples = _teacher(**rates).generate([p for *_, p in items], 40, STOPS, 256, range(len(items)))
    pairs = zip(items, samples, strict=True)
    kinds = [_classify(problem, k, s.text) for (problem, k, _), steps in pairs for s in steps]
    assert len(kinds) > 4000
    for kind, rate in rates.items():
        assert abs(kinds.count(kind) / len(kinds) - rate) < 0.025, kind


def test_answer_errors_miscopy_the_output():
    prompts = [build_prompt(p.question, [*solution.code_steps(p), solution.output_block(p.answer)]) for p in PROBLEMS]
    samples = _teacher(answer_error=0.25).generate(prompts, 100, STOPS, 256, range(30))
    wrong = 0
    for problem, steps in zip(PROBLEMS, samples, strict=True):
        for step in steps:
            stated = extract_answer(step.text)
            assert re.fullmatch(r"-?\d+", stated) and step.text == solution.answer_step(stated)
            wrong += int(stated) != int(problem.answer)
    assert abs(wrong / 3000 - 0.25) < 0.03


def test_samples_depend_only_on_prompt_seed_and_rates():
    teacher = _teacher(wrong_operand=0.2, wrong_operation=0.2, code_error=0.2, answer_error=0.3)
    items = _code_prompts()[::7]
    prompts, seeds = [p for *_, p in items], [derive_seed("s", i) for i in range(len(items))]
    together = teacher.generate(prompts, 6, STOPS, 256, seeds)
    alone = [teacher.generate([p], 6, STOPS, 256, [s])[0] for p, s in zip(prompts, seeds, strict=True)]
    backwards = teacher.generate(prompts[::-1], 6, STOPS, 256, seeds[::-1])[::-1]
    fresh = _teacher(wrong_operand=0.2, wrong_operation=0.2, code_error=0.2, answer_error=0.3)
    assert together == alone == backwards == fresh.generate(prompts, 6, STOPS, 256, seeds)
    reseeded = teacher.generate(prompts, 6, STOPS, 256, [s + 1 for s in seeds])
    assert reseeded != together  # the seed matters
    assert teacher.generate(prompts, 3, STOPS, 256, seeds) == [s[:3] for s in together]


def test_stop_strings_and_token_limits_follow_the_policy_contract():
    problem = PROBLEMS[0]
    code = solution.code_steps(problem)
    answer_prompt = build_prompt(problem.question, [*code, solution.output_block(problem.answer)])
    prompts = [build_prompt(problem.question, code[:k]) for k in range(len(code))] + [answer_prompt]
    tags = [STEP_END] * (len(code) - 1) + [CODE_END, ANSWER_END]
    teacher = _teacher(wrong_operand=0.3, code_error=0.3)
    for steps, tag in zip(teacher.generate(prompts, 4, STOPS, 256, range(len(prompts))), tags, strict=True):
        for step in steps:
            assert step.finish is FinishReason.STOP and step.stop == tag and step.text.endswith(tag)
            assert step.num_tokens == len(step.text.split())
    # a tag that is not a stop string ends the step without a stop (EOS)
    only_step = teacher.generate(prompts, 1, [STEP_END], 256, range(len(prompts)))
    assert [s[0].stop for s in only_step] == [STEP_END] * (len(code) - 1) + [None, None]
    assert only_step[-1][0].finish is FinishReason.EOS and only_step[-1][0].text.endswith(ANSWER_END)
    # the earliest stop string wins, wherever it is
    [[newline]] = teacher.generate(prompts[:1], 1, ["\n", STEP_END], 256, [0])
    assert newline.text == "<code>\n" and newline.stop == "\n"
    # the token limit cuts after max_tokens words
    [[short]] = _teacher().generate(prompts[1:2], 1, STOPS, 3, [0])
    assert short.finish is FinishReason.LENGTH and short.stop is None and short.num_tokens == 3
    assert code[1].startswith(short.text) and len(short.text.split()) == 3


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, "0.2", True, None])
@pytest.mark.parametrize("name", ["wrong_operand", "wrong_operation", "code_error", "answer_error"])
def test_bad_rates_are_rejected(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a probability in \\[0, 1\\]"):
        _teacher(**{name: value})


def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="must sum to at most 1"):
        _teacher(wrong_operand=0.5, wrong_operation=0.4, code_error=0.2)
    with pytest.raises(ValueError, match="no extra\\['steps'\\]"):
        ToyTeacher([Problem("x/1", "What is 1 + 1?", "2")], **RATES)
    teacher = _teacher(PROBLEMS[:3])
    unknown = PROBLEMS[5].question
    with pytest.raises(ValueError, match=f"unknown question {re.escape(repr(unknown[:60]))}"):
        teacher.generate([build_prompt(unknown, [])], 1, STOPS, 256, [0])
    with pytest.raises(ValueError, match="not a build_prompt prompt"):
        teacher.generate(["What is 1 + 1?"], 1, STOPS, 256, [0])
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        teacher.generate([build_prompt(PROBLEMS[0].question, [])] * 2, 1, STOPS, 256, [0])


def test_mcts_with_the_teacher_finds_correct_and_wrong_answers(tmp_path, executor):
    problems = [*PROBLEMS[0:2], *PROBLEMS[10:12], *PROBLEMS[20:22]]
    # ~0.15 mistakes per code step (0.3 per step leaves 8-rollout round-1 trees nearly without correct answers:
    # dedup folds the correct samples into one child while every mistake is a child of its own)
    teacher = _teacher(wrong_operand=0.05, wrong_operation=0.05, code_error=0.05, answer_error=0.05)
    cfg = SearchConfig(rollouts=8, samples_per_expansion=4, max_depth=12, batch_problems=6)
    run_search(
        problems,
        tmp_path / "trees.jsonl",
        cfg=cfg,
        mode=SearchMode.TERMINAL,
        policy=teacher,
        executor=executor,
        grader=ProjectGrader(),
        ppm=None,
        run_seed=5,
        progress=False,
    )
    records = read_records(tmp_path / "trees.jsonl")
    values = {1.0: 0, -1.0: 0}
    for record, problem in zip(records, problems, strict=True):
        leaves = [s for s in record["rstar"].values() if s["terminal_kind"] == "answer"]
        assert leaves, problem.id
        for leaf in leaves:
            assert leaf["value"] in values
            assert (leaf["answer"] == problem.answer) == (leaf["value"] == 1.0)
            values[leaf["value"]] += 1
    assert values[1.0] > 0 and values[-1.0] > 0
    assert any(s["terminal_kind"] == "code_errors" for r in records for s in r["rstar"].values())
