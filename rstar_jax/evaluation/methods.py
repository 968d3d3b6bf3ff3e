"""One test-time method on one chunk of problems, metered per problem: the rows of the predictions files.

    meter = Meter(policy_tokens=count, reward_tokens=count)
    rows = run_chunk(EvalMethod.MCTS, 8, problems, models=models, cfg=search_cfg, meter=meter, ...)

`run_chunk` calls the method's one function of `rstar_jax.search.baselines` (the round evaluation,
`evolve/evaluate.py`, calls the same functions) with the budget applied to the search config (`budgeted_config`):
votes and best-of-N sample `budget` trajectories, beam search keeps `budget` beams, MCTS runs `budget` rollouts
and the paper protocol `budget` MCTS runs of `search.rollouts` rollouts each. Greedy ignores the budget.

Every model call goes through `Meter`'s wrappers, which attribute each prompt (and each scored text) to the
problem whose question it contains: generated tokens (`Step.num_tokens`), prefilled tokens (the prompt's tokens
per policy call, before prefix-cache reuse) and reward-model calls (texts scored) and tokens, per problem.
Wall time is the chunk's, split evenly over its problems. None of this reads the ground truth; the rows'
`correct` is graded afterwards (`rstar_jax.search.is_correct`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rstar_jax.config import EvalMethod, SearchConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, Step, ValueModel
from rstar_jax.search import Grader, baselines, is_correct
from rstar_jax.search.driver import Runner

__all__ = ["EvalModels", "Meter", "budgeted_config", "needs_reward", "run_chunk", "trajectories_of"]

TokenCount = Callable[[Sequence[str]], list[int]]


def needs_reward(method: EvalMethod) -> bool:
    """Whether `method` needs a reward model (all but greedy and majority vote)."""
    return method not in (EvalMethod.GREEDY, EvalMethod.MAJORITY)


def budgeted_config(method: EvalMethod, budget: int, cfg: SearchConfig) -> SearchConfig:
    """The search config of `method` at `budget` (module docstring)."""
    match method:
        case EvalMethod.BEAM:
            return dataclasses.replace(cfg, beam_width=budget)
        case EvalMethod.MCTS:
            return dataclasses.replace(cfg, rollouts=budget)
        case EvalMethod.PROTOCOL:
            return dataclasses.replace(cfg, protocol_runs=budget, protocol_top_k=min(cfg.protocol_top_k, budget))
        case _:
            return cfg


def trajectories_of(method: EvalMethod, budget: int, cfg: SearchConfig, candidates: int) -> int:
    """Trajectories (rollouts) `method` sampled for one problem; `candidates` = what beam search returned."""
    match method:
        case EvalMethod.GREEDY:
            return 1
        case EvalMethod.BEAM:
            return candidates
        case EvalMethod.PROTOCOL:
            return budget * cfg.rollouts
        case _:
            return budget


@dataclasses.dataclass(frozen=True)
class EvalModels:
    """The models of an evaluation, built on first use: `policy(temperature)`, the `reward` model (or None)."""

    policy: Callable[[float], Policy]
    reward: Callable[[], ValueModel] | None


class Meter:
    """Per-problem counters of model use; `watch(problems)` starts a chunk, `take()` returns and clears them."""

    def __init__(self, policy_tokens: TokenCount, reward_tokens: TokenCount):
        self.policy_tokens, self.reward_tokens = policy_tokens, reward_tokens
        self.questions: list[str] = []
        self.counts = np.zeros((0, 4), np.int64)  # [P, (generated, prefilled, reward calls, reward tokens)]

    def watch(self, problems: Sequence[Problem]) -> None:
        self.questions = [p.question for p in problems]
        self.counts = np.zeros((len(problems), 4), np.int64)

    def owner(self, text: str) -> int:
        """Index of the problem whose question `text` contains (the longest, when several do)."""
        found = [i for i, q in enumerate(self.questions) if q in text]
        if not found:
            raise ValueError(f"a model call's text contains none of the chunk's questions: {text[:80]!r}")
        return max(found, key=lambda i: len(self.questions[i]))

    def take(self) -> np.ndarray:
        out, self.counts = self.counts, np.zeros_like(self.counts)
        return out

    def policy(self, inner: Policy) -> Policy:
        return _MeteredPolicy(inner, self)

    def reward(self, inner: ValueModel) -> ValueModel:
        return _MeteredReward(inner, self)


class _MeteredPolicy:
    def __init__(self, inner: Policy, meter: Meter):
        self.inner, self.meter = inner, meter

    def generate(self, prompts, n, stop, max_tokens, seed) -> list[list[Step]]:
        out = self.inner.generate(prompts, n, stop, max_tokens, seed)
        for prompt, steps, tokens in zip(prompts, out, self.meter.policy_tokens(prompts), strict=True):
            i = self.meter.owner(prompt)
            self.meter.counts[i, 0] += sum(s.num_tokens for s in steps)
            self.meter.counts[i, 1] += tokens
        return out


class _MeteredReward:
    def __init__(self, inner: ValueModel, meter: Meter):
        self.inner, self.meter = inner, meter

    def score(self, texts) -> np.ndarray:
        if not len(texts):  # beam search scores nothing once every beam answered; FlaxPPMScorer needs >= 1 text
            return np.zeros((0,), np.float32)
        out = self.inner.score(texts)
        for text, tokens in zip(texts, self.meter.reward_tokens(texts), strict=True):
            i = self.meter.owner(text)
            self.meter.counts[i, 2] += 1
            self.meter.counts[i, 3] += tokens
        return out


def _predict(method, budget, problems, *, models, cfg, meter, executor, grader, temperature, run_seed):
    common = dict(cfg=budgeted_config(method, budget, cfg), executor=executor, grader=grader, run_seed=run_seed)
    if method is EvalMethod.GREEDY:
        return baselines.greedy(problems, policy=meter.policy(models.policy(0.0)), **common)
    policy = meter.policy(models.policy(temperature))
    if method is EvalMethod.MAJORITY:
        return baselines.self_consistency(problems, budget, policy=policy, **common)
    if models.reward is None:
        raise ValueError(f"config.eval.methods: {method.value} needs a reward model (config.eval.reward_model)")
    ppm = meter.reward(models.reward())
    match method:
        case EvalMethod.BEST_OF_N:
            return baselines.best_of_n(problems, budget, policy=policy, ppm=ppm, **common)
        case EvalMethod.WEIGHTED_VOTE:
            return baselines.weighted_vote(problems, budget, policy=policy, ppm=ppm, **common)
        case EvalMethod.BEAM:
            return baselines.step_beam_search(problems, policy=policy, ppm=ppm, **common)
        case EvalMethod.MCTS:
            return baselines.mcts(problems, policy=policy, ppm=ppm, **common)
        case EvalMethod.PROTOCOL:
            return baselines.paper_protocol(problems, policy=policy, ppm=ppm, **common)
    raise AssertionError(method)


def run_chunk(
    method: EvalMethod,
    budget: int,
    problems: Sequence[Problem],
    *,
    models: EvalModels,
    cfg: SearchConfig,
    meter: Meter,
    executor: Runner,
    grader: Grader,
    temperature: float,
    run_seed: int,
) -> list[dict[str, Any]]:
    """The predictions-file rows [P] of `method` at `budget` on `problems` (module docstring)."""
    meter.watch(problems)
    start = time.perf_counter()
    predictions = _predict(
        method,
        budget,
        problems,
        models=models,
        cfg=cfg,
        meter=meter,
        executor=executor,
        grader=grader,
        temperature=temperature,
        run_seed=run_seed,
    )
    wall = (time.perf_counter() - start) / max(len(problems), 1)
    counts = meter.take()  # [P, 4]
    rows = []
    for problem, pred, c in zip(problems, predictions, counts, strict=True):
        rows.append(
            {
                "id": problem.id,
                "method": method.value,
                "budget": budget,
                "answer": pred.answer,
                "correct": bool(is_correct(grader, pred.answer, problem.answer)),
                "trajectories": trajectories_of(method, budget, cfg, len(pred.candidates)),
                "candidates": [[a, float(s)] for a, s in pred.candidates],
                "generated_tokens": int(c[0]),
                "prefilled_tokens": int(c[1]),
                "reward_calls": int(c[2]),
                "reward_tokens": int(c[3]),
                "wall_s": round(wall, 4),
            }
        )
    return rows
