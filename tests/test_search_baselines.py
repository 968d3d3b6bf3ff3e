"""Test-time baselines: greedy, votes, best-of-N, weighted vote, beam search, the paper protocol."""

import collections

import numpy as np
import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import Executor
from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.search import baselines, build_prompt
from rstar_jax.search.steps import STEP_END
from rstar_jax.search.trajectories import Trajectory, beam_search, sample_trajectories
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy, ScriptedToyPolicy
from rstar_jax.toy import generate_problems

CFG = SearchConfig(
    rollouts=3, samples_per_expansion=3, max_depth=4, batch_problems=8, beam_width=3, protocol_runs=3, protocol_top_k=2
)
POLICY = RandomStepPolicy(weights=(3.0, 2.0, 0.5, 2.0, 0.2, 0.2))


class SealedProblem:
    """A problem whose ground truth may not be read."""

    extra = {}

    def __init__(self, i: int):
        self.id, self.question = f"sealed/{i}", f"Sealed question {i}?"

    @property
    def answer(self):
        raise AssertionError("the ground truth was read")


PROBLEMS = [SealedProblem(i) for i in range(6)]


def _majority(answers):
    """Independent majority vote (exact match), first-seen answer on ties."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def test_group_answers_uses_equivalence_in_first_seen_order():
    assert baselines.group_answers(["1", "2", " 1", "3", "2"], BoxGrader()) == [[0, 2], [1, 4], [3]]


def _answered(*answers):
    return [Trajectory((), a, f"t{i}") for i, a in enumerate(answers)]


def test_majority_answer_groups_equivalent_answers_and_breaks_ties_by_first_seen():
    grader = BoxGrader()
    assert baselines.majority_answer(_answered("3", None, "4", " 4", "3", "4"), grader) == "4"
    assert baselines.majority_answer(_answered("5", "6"), grader) == "5"
    assert baselines.majority_answer(_answered(None, None), grader) is None


def test_best_scored_answer_ignores_trajectories_without_an_answer_and_keeps_the_first_on_ties():
    assert baselines.best_scored_answer(_answered("1", None, "2", "3"), [0.5, 0.9, 0.7, 0.7]) == "2"
    assert baselines.best_scored_answer(_answered(None, None), [0.1, 0.2]) is None


def test_score_trajectories_scores_each_trajectory_once_in_one_call():
    calls = []

    class CountingPPM:
        def score(self, texts):
            calls.append(list(texts))
            return np.arange(len(texts), dtype=np.float32)

    runs = [_answered("1", "2"), _answered("3"), _answered()]
    assert baselines.score_trajectories(runs, CountingPPM()) == [[0.0, 1.0], [2.0], []]
    assert calls == [["t0", "t1", "t0"]]


def test_greedy_solves_toy_problems_with_the_error_free_teacher():
    problems = generate_problems("gsm", 3, 1)
    with Executor(timeout_s=5.0, workers=1) as executor:
        out = baselines.greedy(
            problems,
            cfg=SearchConfig(max_depth=8),
            policy=ScriptedToyPolicy(problems, 0.0),
            executor=executor,
            grader=BoxGrader(),
            run_seed=0,
        )
    assert [p.answer for p in out] == [p.answer for p in problems]


def test_trajectories_do_not_depend_on_batch_composition():
    together = sample_trajectories(
        PROBLEMS, 4, cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), run_seed=3
    )
    for problem, trajectories in zip(PROBLEMS, together, strict=True):
        alone = sample_trajectories(
            [problem], 4, cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), run_seed=3
        )
        assert alone[0] == trajectories
        for t in trajectories:
            assert t.text == build_prompt(problem.question, t.texts)
    assert len({t.answer for ts in together for t in ts}) > 1


def test_self_consistency_is_a_majority_vote():
    out = baselines.self_consistency(
        PROBLEMS, 5, cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), run_seed=1
    )
    for pred in out:
        assert len(pred.candidates) == 5
        assert pred.answer == _majority([a for a, _ in pred.candidates])


def test_best_of_n_and_weighted_vote_follow_the_ppm():
    ppm = HashPPM()
    kwargs = dict(cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), ppm=ppm, run_seed=2)
    best = baselines.best_of_n(PROBLEMS, 5, **kwargs)
    weighted = baselines.weighted_vote(PROBLEMS, 5, **kwargs)
    trajectories = sample_trajectories(
        PROBLEMS, 5, cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), run_seed=2
    )
    for b, w, ts in zip(best, weighted, trajectories, strict=True):
        scored = [(t.answer, float(ppm.score([t.text])[0])) for t in ts]
        answered = [c for c in scored if c[0] is not None]
        assert b.answer == (max(answered, key=lambda c: c[1])[0] if answered else None)
        sums = collections.defaultdict(float)
        for a, s in answered:
            sums[a] += s
        if answered:
            top = max(sums.values())
            assert w.answer == next(a for a, _ in answered if sums[a] == top)


def test_beam_search_keeps_answers_out_of_the_beam():
    policy, ppm = RandomStepPolicy(weights=(3.0, 2.0, 0.5, 1.0, 0.2, 0.2)), HashPPM()
    found = beam_search(
        PROBLEMS, cfg=CFG, policy=policy, executor=FakeExecutor(), grader=BoxGrader(), ppm=ppm, run_seed=4
    )
    for call in policy.calls:  # never more prompts per problem than the beam width
        per_problem = collections.Counter(prompt.split("?")[0] for prompt in call)
        assert max(per_problem.values()) <= CFG.beam_width
    for problem, answers in zip(PROBLEMS, found, strict=True):
        scores = [s for _, s in answers]
        assert scores == sorted(scores, reverse=True)
        for trajectory, score in answers:
            assert trajectory.texts[-1].endswith("<end_of_answer>")
            assert all("<end_of_answer>" not in text for text in trajectory.texts[:-1])  # no child under an answer
            assert trajectory.text == build_prompt(problem.question, trajectory.texts)
            assert score == pytest.approx(float(ppm.score([trajectory.text])[0]))
    assert sum(len(a) for a in found) > 0
    preds = baselines.step_beam_search(
        PROBLEMS, cfg=CFG, policy=policy, executor=FakeExecutor(), grader=BoxGrader(), ppm=ppm, run_seed=4
    )
    assert [p.answer for p in preds] == [a[0][0].answer if a else None for a in found]


class NonEmptyPPM(HashPPM):
    """A scorer that refuses an empty list, as a real batched scorer may (an empty batch has no shape)."""

    def score(self, texts):
        assert texts, "the PPM was called with an empty list"
        return super().score(texts)


def test_beam_search_and_scoring_never_call_the_scorer_with_an_empty_list():
    dead_ends = RandomStepPolicy(weights=(0.0, 0.0, 1.0, 0.0, 0.0, 0.0))  # every step a code error: no candidate
    ppm = NonEmptyPPM()
    preds = baselines.step_beam_search(
        PROBLEMS, cfg=CFG, policy=dead_ends, executor=FakeExecutor(), grader=BoxGrader(), ppm=ppm, run_seed=4
    )
    assert [(p.answer, p.candidates) for p in preds] == [(None, ())] * len(PROBLEMS)
    assert len(dead_ends.calls) == 1 and ppm.calls == []  # one expansion, every child dead, nothing scored
    assert baselines.score_trajectories([[], []], ppm) == [[], []] and ppm.calls == []


def test_paper_protocol_votes_over_the_top_k_run_answers():
    out = baselines.paper_protocol(
        PROBLEMS, cfg=CFG, policy=POLICY, executor=FakeExecutor(), grader=BoxGrader(), ppm=HashPPM(), run_seed=5
    )
    for pred in out:
        assert len(pred.candidates) <= CFG.protocol_top_k
        values = [v for _, v in pred.candidates]
        assert values == sorted(values, reverse=True)
        assert pred.answer == _majority([a for a, _ in pred.candidates])
    assert any(pred.candidates for pred in out)


def test_votes_ignore_missing_answers():
    problems = [Problem("p", "Q?", "1")]
    out = baselines.self_consistency(
        problems,
        3,
        cfg=SearchConfig(max_depth=1),
        policy=RandomStepPolicy(weights=(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
        executor=FakeExecutor(),
        grader=BoxGrader(),
        run_seed=0,
    )
    assert out[0].answer is None and all(a is None for a, _ in out[0].candidates)


class _OutOfContextAfterOneStep:
    """The error-free toy teacher, except that a prompt holding a step has no room left (what `FlaxPolicy` returns
    for a prompt that no longer fits its context: n empty LENGTH steps)."""

    def __init__(self, problems):
        self.inner = ScriptedToyPolicy(problems, 0.0)

    def generate(self, prompts, n, stop, max_tokens, seed):
        out = self.inner.generate(prompts, n, stop, max_tokens, seed)
        full = [STEP_END in p for p in prompts]
        return [[Step("", FinishReason.LENGTH, None, 0)] * n if f else row for f, row in zip(full, out, strict=True)]


def test_a_policy_out_of_context_ends_the_trajectory_as_too_deep():
    problems = generate_problems("gsm", 2, 1)
    runs = sample_trajectories(
        problems,
        2,
        cfg=SearchConfig(max_depth=8),
        policy=_OutOfContextAfterOneStep(problems),
        executor=FakeExecutor(),
        grader=BoxGrader(),
        run_seed=0,
    )
    for trajectories in runs:
        for t in trajectories:
            assert t.answer is None and len(t.texts) == 2 and t.texts[1] == ""
