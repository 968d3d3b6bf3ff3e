"""Step-by-step solution sampling without a tree: independent trajectories and step-level beam search.

Both reuse the MCTS step machinery (`steps.filter_samples`, `nodes.make_children`), so a step is parsed,
executed and shown exactly as in the tree search; problems move in lock-step (one policy call, one executor
batch and one PPM call per depth step).

Step-level beam search (rstar_reference.md Part B §5, without its bugs): every beam node is expanded with n
samples; all new answer and non-terminal children are PPM-scored (dead ends are dropped); answers go to the
final list and never occupy the beam; the beam keeps the top `width - answers found` non-terminal candidates
(never negative), so prompts and samples always stay aligned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import build_program
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.search.driver import Runner, problem_seed
from rstar_jax.search.grader import Grader
from rstar_jax.search.nodes import HostNode, make_children, program_steps
from rstar_jax.search.steps import build_prompt, derive_seed, filter_samples
from rstar_jax.search.tree import TerminalKind

__all__ = ["Trajectory", "beam_search", "sample_trajectories"]


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One solution attempt: node texts root -> last, the extracted answer (None if it never answered), and
    `text`, the full PPM input (prompt + steps)."""

    texts: tuple[str, ...]
    answer: str | None
    text: str


@dataclasses.dataclass
class _State:
    problem: int
    node: HostNode
    texts: tuple[str, ...] = ()
    index: int = 0  # trajectory index (sampling) or beam rank (beam search)


def _advance(states, samples_per_state, executor: Runner, grader: Grader, cfg: SearchConfig) -> list[list[HostNode]]:
    """Creates the children of every state from its filtered samples (one executor batch for all)."""
    programs = [
        build_program(program_steps(st.node, s.step.text))
        for st, samples in zip(states, samples_per_state, strict=True)
        for s in samples
        if not s.is_answer
    ]
    results = iter(executor.run_batch(programs) if programs else [])
    out = []
    for st, samples in zip(states, samples_per_state, strict=True):
        res = [next(results) for s in samples if not s.is_answer]
        ans = [grader.extract(s.step.text) for s in samples if s.is_answer]
        out.append(
            make_children(
                st.node,
                samples,
                res,
                ans,
                depth=len(st.texts) + 1,
                errors_threshold=cfg.errors_threshold,
                max_depth=cfg.max_depth,
            )
        )
    return out


def _generate(policy: Policy, prompts: list[str], seeds: list[int], n: int, cfg: SearchConfig):
    out = policy.generate(prompts, n, cfg.stop_strings, cfg.max_step_tokens, seeds)
    if len(out) != len(prompts) or any(len(s) != n for s in out):
        raise ValueError(
            f"rstar_jax/search/trajectories.py: policy returned {[len(s) for s in out]} samples "
            f"for {len(prompts)} prompts x n={n}"
        )
    return out


def sample_trajectories(
    problems: Sequence[Problem],
    num: int,
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    run_seed: int,
) -> list[list[Trajectory]]:
    """`num` independent step-by-step solutions per problem (one sample per step, up to `cfg.max_depth` steps).

    Trajectory j of a problem uses seeds derived from (problem seed, "trajectory", j, depth). A trajectory ends
    at an answer step, a CODE_ERRORS / TOO_DEEP dead end (answer None) or after `max_depth` steps.

    Returns:
      Per problem, its `num` trajectories in index order.
    """
    seeds = [problem_seed(run_seed, p.id) for p in problems]
    alive = [_State(i, HostNode(), (), j) for i in range(len(problems)) for j in range(num)]
    done: dict[int, Trajectory] = {}
    for depth in range(cfg.max_depth):
        if not alive:
            break
        prompts = [build_prompt(problems[st.problem].question, st.texts) for st in alive]
        step_seeds = [derive_seed(seeds[st.problem], "trajectory", st.index, depth) for st in alive]
        outs = _generate(policy, prompts, step_seeds, 1, cfg)
        kept = [filter_samples(steps, st.node.in_code, False) for st, steps in zip(alive, outs, strict=True)]
        children = _advance(alive, kept, executor, grader, cfg)
        still = []
        for st, prompt, (child,) in zip(alive, prompts, children, strict=True):
            texts = (*st.texts, child.text)
            if child.kind is TerminalKind.NONE:
                still.append(_State(st.problem, child, texts, st.index))
            else:
                done[st.problem * num + st.index] = Trajectory(texts, child.answer, prompt + child.text)
        alive = still
    for st in alive:
        done[st.problem * num + st.index] = Trajectory(
            st.texts, None, build_prompt(problems[st.problem].question, st.texts)
        )
    return [[done[i * num + j] for j in range(num)] for i in range(len(problems))]


def beam_search(
    problems: Sequence[Problem],
    *,
    cfg: SearchConfig,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel,
    run_seed: int,
) -> list[list[tuple[Trajectory, float]]]:
    """Step-level beam search (module docstring) with width `cfg.beam_width` and n = `cfg.samples_per_expansion`.

    Returns:
      Per problem, the answers found as (trajectory, PPM score), best first (stable on ties).
    """
    seeds = [problem_seed(run_seed, p.id) for p in problems]
    beams = [[_State(i, HostNode())] for i in range(len(problems))]
    found: list[list[tuple[Trajectory, float]]] = [[] for _ in problems]
    for depth in range(cfg.max_depth):
        states = [st for beam in beams for st in beam]
        if not states:
            break
        prompts = [build_prompt(problems[st.problem].question, st.texts) for st in states]
        step_seeds = [derive_seed(seeds[st.problem], "beam", depth, st.index) for st in states]
        outs = _generate(policy, prompts, step_seeds, cfg.samples_per_expansion, cfg)
        kept = [filter_samples(s, st.node.in_code, cfg.first_answer_only) for st, s in zip(states, outs, strict=True)]
        children = _advance(states, kept, executor, grader, cfg)
        candidates = [
            (st, prompt, child)
            for st, prompt, kids in zip(states, prompts, children, strict=True)
            for child in kids
            if child.kind in (TerminalKind.NONE, TerminalKind.ANSWER)
        ]
        if not candidates:  # every child a dead end (code error, unfinished): no beam goes on, nothing to score
            break
        scores = np.asarray(ppm.score([prompt + child.text for _, prompt, child in candidates]), np.float32)
        if scores.shape != (len(candidates),):
            raise ValueError(f"rstar_jax/search/trajectories.py: PPM returned shape {scores.shape}")
        per_problem: list[list[tuple[float, _State]]] = [[] for _ in problems]
        for (st, prompt, child), score in zip(candidates, scores.tolist(), strict=True):
            texts = (*st.texts, child.text)
            if child.kind is TerminalKind.ANSWER:
                found[st.problem].append((Trajectory(texts, child.answer, prompt + child.text), score))
            else:
                per_problem[st.problem].append((score, _State(st.problem, child, texts)))
        beams = []
        for i, cands in enumerate(per_problem):
            room = max(cfg.beam_width - len(found[i]), 0)
            best = sorted(cands, key=lambda c: -c[0])[:room]
            beams.append([dataclasses.replace(st, index=rank) for rank, (_, st) in enumerate(best)])
    return [sorted(answers, key=lambda a: -a[1]) for answers in found]
