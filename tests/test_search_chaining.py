"""Code chaining (rstar_reference.md Part A "code execution", Part B §2.6): a new step runs the code of every step
since the last node that closed a code block or showed an output, with or without `<code>` tags."""

import dataclasses

import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import Executor
from rstar_jax.interfaces import Step
from rstar_jax.search import BatchSearch, SearchMode, TreeKernels, batch_records
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, stop_step

PROBLEM = Problem("chain/1", "What is 2 + 2?", "4")


@dataclasses.dataclass
class ChainPolicy:
    """One fixed sample per depth (the number of steps already in the prompt); the last entry repeats."""

    steps: list[Step]

    def generate(self, prompts, n, stop, max_tokens, seed):
        out = []
        for prompt in prompts:
            depth = sum(prompt.count(tag) for tag in ("<end_of_step>", "<end_of_code>", "<end_of_answer>"))
            out.append([self.steps[min(depth, len(self.steps) - 1)]] * n)
        return out


def _path(steps: list[Step], executor, errors_threshold: int = 1) -> list[dict]:
    """The single path the policy writes (n = 1, one rollout): its nodes' states, depth 1 first."""
    depth = len(steps) + 1
    cfg = SearchConfig(
        rollouts=1, samples_per_expansion=1, max_depth=depth, batch_problems=1, errors_threshold=errors_threshold
    )
    search = BatchSearch(
        [PROBLEM], cfg, SearchMode.TERMINAL, ChainPolicy(steps), executor, BoxGrader(), HashPPM(), 0,
        TreeKernels.build(cfg),
    ).run_rollouts()  # fmt: skip
    rstar = batch_records(search)[0]["rstar"]
    tags = ["0"]
    while f"{tags[-1]}.1" in rstar:
        tags.append(f"{tags[-1]}.1")
    return [rstar[t] for t in tags[1:]]


@pytest.fixture(scope="module")
def executor():
    with Executor(timeout_s=5.0, workers=1) as ex:
        yield ex


def test_untagged_python_steps_are_chained(executor):
    """The issue's example: `x0 = 1` then `x1 = x0 + 1`, both outside `<code>`; the second must not raise NameError."""
    steps = [
        stop_step("x0 = 1\n", "<end_of_step>"),
        stop_step("\nx1 = x0 + 1\n", "<end_of_step>"),
        stop_step("\nx1 * 10\n", "<end_of_step>"),
        stop_step("\n<answer>\\boxed{4}", "<end_of_answer>"),
    ]
    path = _path(steps, executor)
    assert [s["consecutive_errors"] for s in path[:3]] == [0, 0, 0]
    assert "code_errors" not in [s["terminal_kind"] for s in path] and path[-1]["terminal_kind"] == "answer"
    assert path[2]["observation"] == "20"  # x0 = 1; x1 = x0 + 1; x1 * 10 ran as one program


def test_tagged_and_untagged_steps_and_where_the_history_stops():
    """Exact programs: an open block chains; a shown output ends the history; untagged steps chain after it; a
    later `<code>` block keeps only its own code (the untagged text before it is not code)."""
    steps = [
        stop_step("<code>\nx = 2\n", "<end_of_step>"),
        stop_step("\n\ny = x + 1\n", "<end_of_step>"),
        stop_step("\n\nprint(y)\n", "<end_of_code>"),
        stop_step("\nz = 5\n", "<end_of_step>"),
        stop_step("\nw = z * 2\n", "<end_of_step>"),
        stop_step("<code>\nprint(w)\n", "<end_of_code>"),
        stop_step("\nv = 1\n", "<end_of_step>"),
        stop_step("\n<answer>\\boxed{4}", "<end_of_answer>"),
    ]
    fake = FakeExecutor()
    path = _path(steps, fake)
    programs = [program for batch in fake.batches for program in batch]
    assert programs == [
        "# ========\nx = 2",
        "# ========\nx = 2\n\n\ny = x + 1",
        "# ========\nx = 2\n\n\ny = x + 1\n\n\nprint(y)",
        "z = 5",  # after the shown output: nothing earlier
        "z = 5\n\nw = z * 2",  # untagged steps chain
        "# ========\nprint(w)",  # a <code> block: only its code (as the reference's extract_program)
        "v = 1",  # after the second output
    ]
    assert path[-1]["terminal_kind"] == "answer"


def test_untagged_chain_error_is_shown_by_the_step_that_needs_the_history(executor):
    """Without chaining `print(a + 1)` raised NameError; with it the chain runs and the error threshold is not hit."""
    steps = [stop_step("a = 41\n", "<end_of_step>"), stop_step("\nprint(a + 1)\n", "<end_of_step>")]
    path = _path(steps + [stop_step("\n<answer>\\boxed{42}", "<end_of_answer>")], executor)
    assert path[1]["observation"] == "42" and path[1]["consecutive_errors"] == 0
    broken = [stop_step("a = 41\n", "<end_of_step>"), stop_step("\nprint(b)\n", "<end_of_step>")]
    path = _path(broken, executor)
    assert path[1]["terminal_kind"] == "code_errors" and "NameError" in path[1]["observation"]
