"""The Part A rules through the driver: answer rule, filter, errors, depth, dead ends, PPM init, pruning, modes."""

import dataclasses

import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.search import BatchSearch, SearchMode, TreeKernels, batch_records, filter_samples, is_answer_step
from rstar_jax.search.nodes import TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS
from rstar_jax.search.steps import build_prompt, with_observation
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy, stop_step

PROBLEM = Problem("rules/1", "What is 2 + 2?", "4")
ANSWER_4 = stop_step("\n<answer>So \\boxed{4}.", "<end_of_answer>")
ANSWER_5 = stop_step("\n<answer>So \\boxed{5}.", "<end_of_answer>")
CODE = stop_step("<code>\nx = 2\n", "<end_of_step>")
PRINT = stop_step("<code>\nprint(4)\n", "<end_of_code>")
ERROR = stop_step("<code>\ny = 1/0\n", "<end_of_step>")


@dataclasses.dataclass
class TablePolicy:
    """Samples chosen by the number of steps already in the prompt: `table[depth]` (the last entry repeats)."""

    table: list[list[Step]]
    calls: list = dataclasses.field(default_factory=list)

    def generate(self, prompts, n, stop, max_tokens, seed):
        self.calls.append(list(prompts))
        out = []
        for prompt in prompts:
            depth = sum(prompt.count(tag) for tag in ("<end_of_step>", "<end_of_code>", "<end_of_answer>"))
            row = self.table[min(depth, len(self.table) - 1)]
            out.append([row[i % len(row)] for i in range(n)])
        return out


def _search(policy, mode=SearchMode.TERMINAL, problem=PROBLEM, executor=None, ppm=None, **overrides):
    cfg = SearchConfig(
        rollouts=overrides.pop("rollouts", 2),
        samples_per_expansion=overrides.pop("n", 3),
        max_depth=overrides.pop("max_depth", 4),
        batch_problems=4,
        **overrides,
    )
    ppm = ppm if ppm is not None else HashPPM()
    search = BatchSearch(
        [problem], cfg, mode, policy, executor or FakeExecutor(), BoxGrader(), ppm, 0, TreeKernels.build(cfg)
    ).run_rollouts()
    return batch_records(search)[0]["rstar"], search


def test_answer_rule_ignores_box_inside_code():
    assert is_answer_step("\n<answer>\\boxed{3}<end_of_answer>", in_code=False)
    assert is_answer_step("The answer is \\boxed{3}.", in_code=False)  # box in prose, no end tag (EOS)
    assert not is_answer_step("<code>\n# write \\boxed{3} later\nx = 3\n<end_of_step>", in_code=False)
    assert not is_answer_step("\n\n# \\boxed{3}\nx = 3\n<end_of_step>", in_code=True)  # continues an open block
    assert is_answer_step("\n\nprint(3)\n<end_of_code> so \\boxed{3}", in_code=True)  # box after the block


def test_filter_dedups_then_keeps_only_the_first_answer():
    code2 = stop_step("<code>\nx = 3\n", "<end_of_step>")
    samples = [CODE, CODE, ANSWER_5, code2, ANSWER_4]
    assert [s.index for s in filter_samples(samples, False, first_answer_only=True)] == [2]
    assert [s.index for s in filter_samples(samples, False, first_answer_only=False)] == [0, 2, 3, 4]
    eos = Step("<code>\nx = 2\n", FinishReason.EOS, None, 3)  # same text without its stop string: a duplicate
    assert [s.index for s in filter_samples([CODE, eos], False, True)] == [0]


def test_terminal_mode_backs_up_plus_minus_one_and_first_answer_filter():
    rstar, _ = _search(TablePolicy([[CODE, ANSWER_5, ANSWER_4]]), rollouts=1, first_answer_only=True)
    assert set(rstar) == {"0", "0.1"} and rstar["0.1"]["final_answer"] == "5"
    assert (rstar["0.1"]["q_value"], rstar["0"]["q_value"], rstar["0"]["visit_count"]) == (-1.0, -1.0, 1)
    rstar, _ = _search(TablePolicy([[CODE, ANSWER_5, ANSWER_4]]), rollouts=1, max_depth=1, first_answer_only=False)
    assert [rstar[t]["final_answer"] for t in ("0.2", "0.3")] == ["5", "4"]
    assert rstar["0"]["visit_count"] == 2 and rstar["0"]["q_value"] == 0.0 and rstar["0"]["value"] == -1.0


def test_code_error_is_a_local_dead_end_unless_switched():
    table = [[ERROR, PRINT], [ANSWER_4]]
    rstar, _ = _search(TablePolicy(table), rollouts=1, errors_threshold=1)
    err = rstar["0.1"]
    assert err["final_answer"] == TOO_MANY_CODE_ERRORS and err["terminal_kind"] == "code_errors"
    assert err["text"] == with_observation(ERROR.text, "ZeroDivisionError: division by zero")
    assert err["text"].count("<output>") == 1 and err["text"].count("<end_of_code>") == 1
    assert (err["visit_count"], err["q_value"]) == (1, -1.0)
    assert rstar["0"]["visit_count"] == 1 and rstar["0"]["q_value"] == 1.0  # only the correct answer reached it
    rstar, _ = _search(TablePolicy(table), rollouts=1, errors_threshold=1, backup_dead_ends=True)
    assert rstar["0"]["visit_count"] == 2 and rstar["0"]["q_value"] == 0.0


def test_errors_threshold_counts_consecutive_errors():
    again = stop_step("\n\ny = 2/0\n", "<end_of_step>")
    rstar, _ = _search(TablePolicy([[ERROR], [again]]), rollouts=1, n=1, errors_threshold=2)
    first = rstar["0.1"]
    assert (first["final_answer"], first["consecutive_errors"], first["visit_count"]) == ("", 1, 0)
    assert first["terminal_kind"] == "exhausted"  # pruned once its only child died, not a dead end itself
    assert rstar["0.1"]["text"] == ERROR.text  # an intermediate step's error is not shown
    assert rstar["0.1.1"]["consecutive_errors"] == 2 and rstar["0.1.1"]["final_answer"] == TOO_MANY_CODE_ERRORS


def test_output_is_appended_once_after_end_of_code():
    rstar, _ = _search(TablePolicy([[PRINT], [ANSWER_4]]), rollouts=1, n=1)
    assert rstar["0.1"]["text"] == PRINT.text + "\n<output>" + rstar["0.1"]["observation"] + "<end_of_output>"
    assert rstar["0.1.1"]["final_answer"] == "4"


def test_depth_limit_makes_too_deep_terminals():
    step = stop_step("\n\nx = 1\n", "<end_of_step>")
    rstar, _ = _search(TablePolicy([[CODE], [step]]), rollouts=2, n=1, max_depth=2)
    assert rstar["0.1.1"]["final_answer"] == "" and rstar["0.1.1"]["terminal_kind"] == "exhausted"
    deep = rstar["0.1.1.1"]
    assert deep["depth"] == 3 and deep["final_answer"] == TOO_MANY_STEPS and deep["q_value"] == -1.0
    assert rstar["0"]["visit_count"] == 0  # not backed up


def test_exhausted_subtrees_are_pruned():
    rstar, _ = _search(TablePolicy([[ANSWER_4]]), rollouts=3, n=1)
    assert rstar["0"]["terminal_kind"] == "exhausted"
    assert rstar["0"]["visit_count"] == 1  # later rollouts are empty: nothing re-expanded or backed up


def test_ppm_augmented_initialises_new_children_locally():
    ppm = HashPPM()
    table = [[CODE, PRINT], [ANSWER_4]]
    rstar, _ = _search(TablePolicy(table), SearchMode.PPM_AUGMENTED, rollouts=1, max_depth=1, ppm=ppm)
    for tag in ("0.1", "0.2"):
        q0 = float(ppm.score([build_prompt(PROBLEM.question, [rstar[tag]["text"]])])[0])
        assert (rstar[tag]["visit_count"], rstar[tag]["q_value"], rstar[tag]["prior"]) == (1, q0, q0)
    assert rstar["0"]["visit_count"] == 0  # q0 is local: no backup
    rstar, _ = _search(TablePolicy(table), SearchMode.PPM_AUGMENTED, rollouts=2, ppm=ppm)
    answers = [s for s in rstar.values() if s["terminal_kind"] == "answer"]
    assert answers and all(s["q_value"] == 1.0 for s in answers)


class SealedProblem:
    """A problem whose ground truth may not be read."""

    id, question, extra = "sealed/1", "What is 2 + 2?", {}

    @property
    def answer(self):
        raise AssertionError("the ground truth was read in test mode")


def test_test_mode_never_reads_the_ground_truth_and_values_answers_by_ppm():
    ppm = HashPPM()
    rstar, _ = _search(RandomStepPolicy(), SearchMode.TEST, problem=SealedProblem(), rollouts=4, ppm=ppm)
    answers = [s for s in rstar.values() if s["terminal_kind"] == "answer"]
    assert answers
    for state in answers:
        assert state["q_value"] == state["prior"] and state["visit_count"] == 1
    with pytest.raises(AssertionError, match="ground truth"):
        _search(RandomStepPolicy(), SearchMode.TERMINAL, problem=SealedProblem(), rollouts=4)


def test_one_executor_batch_per_depth_step_and_seeds_independent_of_batch():
    problems = [Problem(f"b/{i}", f"Q{i}", "1") for i in range(4)]
    cfg = SearchConfig(rollouts=3, samples_per_expansion=3, max_depth=3, batch_problems=4)
    kernels = TreeKernels.build(cfg)
    executor, policy = FakeExecutor(), RandomStepPolicy()
    together = BatchSearch(problems, cfg, SearchMode.TERMINAL, policy, executor, BoxGrader(), None, 3, kernels)
    together = batch_records(together.run_rollouts())
    assert len(executor.batches) <= len(policy.calls)  # one policy call and at most one run_batch per depth step
    assert max(len({p.split("Q")[1][0] for p in batch}) for batch in policy.calls) > 1
    for problem, record in zip(problems, together, strict=True):
        alone = BatchSearch(
            [problem], cfg, SearchMode.TERMINAL, policy, FakeExecutor(), BoxGrader(), None, 3, kernels
        ).run_rollouts()
        assert batch_records(alone)[0] == record


def test_project_grader_and_list_answers():
    from rstar_jax.search import ProjectGrader, is_correct

    grader = ProjectGrader()
    assert grader.extract("\n<answer>So \\boxed{\\frac{1}{2}}.<end_of_answer>") == "\\frac{1}{2}"
    assert is_correct(grader, "4", "4.0") and not is_correct(grader, "5", "4")
    assert is_correct(BoxGrader(), "3", ("-3", "3")) and not is_correct(BoxGrader(), None, "3")
