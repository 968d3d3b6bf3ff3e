"""The host driver: B problems searched in lock-step with the reference rollout semantics (Part B §4.4-4.6).

One rollout: select one level from the root; then, for at most `max_depth` depth steps, every tree whose current
node is a leaf expands it (one batched policy call, one batched `run_batch` for all programs, one batched PPM
call), and one jitted `kernels.step` creates the children, backs up their values and selects one level down from
every tree's current node (a depth step without expansions only selects). Trees whose selection returns -1 are
idle until the next rollout. The device tree is the only record of structure: the host keeps the node payloads
(`HostNode`, indexed by node id) and, per tree, the path of the rollout in progress (root -> current node).

Values by mode (`SearchMode`):
- TERMINAL (data generation, rounds 1-2): an answer child gets +1 / -1 against the ground truth, backed up to
  the root; no PPM.
- PPM_AUGMENTED (rounds 3-4): as TERMINAL, and every new non-terminal child gets q⁰ = PPM(prompt + path + step)
  as a local update (N = 1).
- TEST: an answer child's value is its PPM score, backed up; non-terminal children get q⁰ as above. The ground
  truth (`Problem.answer`) is never read.
Dead ends (CODE_ERRORS / TOO_DEEP) get a local -1, backed up too when `backup_dead_ends`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.execution import ExecResult, build_program
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.search import kernels
from rstar_jax.search.grader import Grader, is_correct
from rstar_jax.search.kernels import Expansion
from rstar_jax.search.nodes import HostNode, make_children, program_steps
from rstar_jax.search.prompts import Prompter, sft_prompt
from rstar_jax.search.steps import build_prompt, derive_seed, filter_samples
from rstar_jax.search.tree import TerminalKind, Tree, init_tree

__all__ = ["BatchSearch", "Runner", "SearchMode", "TreeKernels", "node_capacity", "problem_seed"]

_DEAD_ENDS = (TerminalKind.CODE_ERRORS, TerminalKind.TOO_DEEP)


class SearchMode(enum.StrEnum):
    """Where node values come from (module docstring)."""

    TERMINAL = "terminal"
    PPM_AUGMENTED = "ppm_augmented"
    TEST = "test"


class Runner(Protocol):
    """What the executor must offer the search (`rstar_jax.execution.Executor` does)."""

    def run_batch(self, programs: Sequence[str]) -> list[ExecResult]:
        """One result per program, in order."""
        ...


def problem_seed(run_seed: int, problem_id: str) -> int:
    """The seed of one problem: a stable hash of (run seed, problem id)."""
    return derive_seed("problem", run_seed, problem_id)


def node_capacity(cfg: SearchConfig) -> int:
    """Static node capacity N: at most one expansion of <= n children per depth step of each rollout."""
    return 1 + cfg.samples_per_expansion * cfg.rollouts * cfg.max_depth


@dataclasses.dataclass(frozen=True)
class TreeKernels:
    """The jitted kernels of one search configuration (built once, reused for every batch: one compile per shape).

    Attributes:
      select: `kernels.select`: (tree, node [B]) -> (tree, next [B], leaf [B]).
      step: `kernels.step`: (tree, Expansion, current [B]) -> (tree, ids [B, K], next [B], leaf [B]).
    """

    select: Callable[..., Any]
    step: Callable[..., Any]

    @classmethod
    def build(cls, cfg: SearchConfig) -> TreeKernels:
        rules = dict(c_puct=cfg.c_puct, unvisited=cfg.unvisited)
        jit = functools.partial(jax.jit, donate_argnums=0)
        return cls(
            select=jit(functools.partial(kernels.select, **rules)), step=jit(functools.partial(kernels.step, **rules))
        )


@dataclasses.dataclass
class BatchSearch:
    """Searches one batch of problems (at most `cfg.batch_problems`) and keeps the trees.

    `prompt` builds the policy's prompts (`prompts.sft_prompt`, or the few-shot `prompts.FewShotPrompt` in round 1);
    the PPM always reads the SFT template. After `run()`: `tree` holds the numbers and the structure (`[B, N]`),
    `nodes[b]` the host payload of problem b's nodes (index = node id), `seeds[b]` its seed, `timings` seconds
    spent per component.
    """

    problems: Sequence[Problem]
    cfg: SearchConfig
    mode: SearchMode
    policy: Policy
    executor: Runner
    grader: Grader
    ppm: ValueModel | None
    run_seed: int
    kernels: TreeKernels
    rollout_offset: int = 0
    prompt: Prompter = sft_prompt

    def __post_init__(self) -> None:
        if self.mode is not SearchMode.TERMINAL and self.ppm is None:
            raise ValueError(f"rstar_jax/search/driver.py: mode {self.mode.value!r} needs a PPM (ppm=None given)")
        if not 0 < len(self.problems) <= self.cfg.batch_problems:
            raise ValueError(
                f"rstar_jax/search/driver.py: batch of {len(self.problems)} problems, "
                f"expected 1..{self.cfg.batch_problems}"
            )
        self.size = len(self.problems)
        self.capacity = node_capacity(self.cfg)
        self.tree: Tree = init_tree(self.size, self.capacity, self.cfg.samples_per_expansion)
        self.nodes: list[list[HostNode]] = [[HostNode()] for _ in self.problems]
        self.paths: list[list[int]] = [[Tree.ROOT] for _ in self.problems]  # the rollout's walk, root -> current
        self.seeds = [problem_seed(self.run_seed, p.id) for p in self.problems]
        self.timings = {"policy_s": 0.0, "execute_s": 0.0, "grade_s": 0.0, "ppm_s": 0.0, "kernel_s": 0.0}
        self.expansions = 0

    def _walk(self, nxt: np.ndarray) -> None:
        """Extends each tree's path by the node its selection moved to (unchanged at a leaf or -1)."""
        for path, node in zip(self.paths, nxt.tolist(), strict=True):
            if node >= 0 and node != path[-1]:
                path.append(node)

    def _select(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        self.tree, nxt, leaf = self.kernels.select(self.tree, current.astype(np.int32))
        nxt, leaf = np.asarray(nxt), np.asarray(leaf)
        self.timings["kernel_s"] += time.perf_counter() - start
        self._walk(nxt)
        return nxt, leaf

    def run_rollouts(self) -> BatchSearch:
        """All rollouts of the batch."""
        for rollout in range(self.rollout_offset, self.rollout_offset + self.cfg.rollouts):
            self.paths = [[Tree.ROOT] for _ in self.problems]
            current, leaf = self._select(np.zeros(self.size, np.int32))
            for _ in range(self.cfg.max_depth):
                if (current < 0).all():
                    break
                expanding = np.flatnonzero(leaf).tolist()  # trees whose current node is a leaf
                current, leaf = self._expand(expanding, current, rollout) if expanding else self._select(current)
        return self

    def path_texts(self, b: int) -> list[str]:
        """Node texts root -> tree b's current node (root text is empty)."""
        return [self.nodes[b][node].text for node in self.paths[b]]

    def _generate(self, expanding: list[int], current: np.ndarray, rollout: int) -> list[list]:
        prompts = [self.prompt(self.problems[b].question, self.path_texts(b), self.seeds[b]) for b in expanding]
        seeds = [derive_seed(self.seeds[b], rollout, len(self.paths[b]) - 1) for b in expanding]
        start = time.perf_counter()
        n = self.cfg.samples_per_expansion
        out = self.policy.generate(prompts, n, self.cfg.stop_strings, self.cfg.max_step_tokens, seeds)
        self.timings["policy_s"] += time.perf_counter() - start
        if len(out) != len(prompts) or any(len(steps) != n for steps in out):
            raise ValueError(
                f"rstar_jax/search/driver.py: policy returned {[len(s) for s in out]} samples "
                f"for {len(prompts)} prompts x n={n}"
            )
        return [
            filter_samples(steps, self.nodes[b][current[b]].in_code, self.cfg.first_answer_only)
            for b, steps in zip(expanding, out, strict=True)
        ]

    def _expand(self, expanding: list[int], current: np.ndarray, rollout: int) -> tuple[np.ndarray, np.ndarray]:
        """Expands the current nodes of `expanding`, then selects one level in every tree: the next nodes."""
        kept = self._generate(expanding, current, rollout)
        programs = [
            build_program(program_steps(self.nodes[b][current[b]], s.step.text))
            for b, samples in zip(expanding, kept, strict=True)
            for s in samples
            if not s.is_answer
        ]
        start = time.perf_counter()
        results = iter(self.executor.run_batch(programs) if programs else [])
        self.timings["execute_s"] += time.perf_counter() - start
        start = time.perf_counter()
        answer_texts = [s.step.text for samples in kept for s in samples if s.is_answer]
        answers = iter([self.grader.extract(text) for text in answer_texts])
        self.timings["grade_s"] += time.perf_counter() - start
        new: dict[int, list[HostNode]] = {}
        for b, samples in zip(expanding, kept, strict=True):
            node_id = int(current[b])
            n_code = sum(not s.is_answer for s in samples)
            res = [next(results) for _ in range(n_code)]
            ans = [next(answers) for _ in range(len(samples) - n_code)]
            new[b] = make_children(
                self.nodes[b][node_id],
                samples,
                res,
                ans,
                depth=len(self.paths[b]),
                errors_threshold=self.cfg.errors_threshold,
                max_depth=self.cfg.max_depth,
            )
            if len(self.nodes[b]) + len(new[b]) > self.capacity:
                raise RuntimeError(
                    f"rstar_jax/search/driver.py: problem {self.problems[b].id!r} exceeds the node "
                    f"capacity {self.capacity}"
                )
        values = self._values(new, current)
        self.expansions += len(expanding)
        return self._apply(new, values, current)

    def _values(self, new: dict[int, list[HostNode]], current: np.ndarray) -> dict[int, list[float | None]]:
        """Per new child: its value (None = no update), from the ground truth, the PPM or the dead-end -1."""
        values: dict[int, list[float | None]] = {b: [None] * len(children) for b, children in new.items()}
        to_score: list[tuple[int, int]] = []
        start = time.perf_counter()
        for b, children in new.items():
            for i, child in enumerate(children):
                if child.kind in _DEAD_ENDS:
                    values[b][i] = -1.0
                elif child.kind is TerminalKind.ANSWER and self.mode is not SearchMode.TEST:
                    values[b][i] = 1.0 if is_correct(self.grader, child.answer, self.problems[b].answer) else -1.0
                elif self.mode is not SearchMode.TERMINAL:
                    to_score.append((b, i))
        self.timings["grade_s"] += time.perf_counter() - start
        if to_score:
            start = time.perf_counter()
            texts = [
                build_prompt(self.problems[b].question, [*self.path_texts(b), new[b][i].text]) for b, i in to_score
            ]
            scores = np.asarray(self.ppm.score(texts), dtype=np.float32)
            self.timings["ppm_s"] += time.perf_counter() - start
            if scores.shape != (len(texts),) or not np.all(np.abs(scores) <= 1.0):
                raise ValueError(
                    f"rstar_jax/search/driver.py: PPM returned shape {scores.shape} / values outside "
                    f"[-1, 1] for {len(texts)} texts"
                )
            for (b, i), score in zip(to_score, scores.tolist(), strict=True):
                values[b][i] = score
        return values

    def _apply(self, new: dict[int, list[HostNode]], values: dict[int, list[float | None]], current):
        """Runs one `kernels.step` and appends the host payloads; returns the next nodes and their leaf flags."""
        size, k = self.size, self.cfg.samples_per_expansion
        node = np.full(size, -1, np.int32)
        count = np.zeros(size, np.int32)
        kind = np.zeros((size, k), np.int8)
        prior = np.zeros((size, k), np.float32)
        update = np.zeros((size, k), bool)
        value = np.zeros((size, k), np.float32)
        total = np.zeros(size, np.float32)
        backed = np.zeros(size, np.int32)
        first = np.zeros(size, np.float32)
        for b, children in new.items():
            node[b], count[b] = current[b], len(children)
            up: list[float] = []
            for i, child in enumerate(children):
                kind[b, i] = int(child.kind)
                v = values[b][i]
                if v is None:
                    continue
                update[b, i], value[b, i] = True, v
                is_dead = child.kind in _DEAD_ENDS
                if child.kind is TerminalKind.NONE:
                    prior[b, i] = v
                elif child.kind is TerminalKind.ANSWER or (is_dead and self.cfg.backup_dead_ends):
                    if self.mode is SearchMode.TEST and child.kind is TerminalKind.ANSWER:
                        prior[b, i] = v
                    up.append(float(np.float32(v)))
            if up:
                total[b], backed[b], first[b] = np.float32(sum(up)), len(up), up[0]
        expansion = Expansion(node, count, kind, prior, update, value, total, backed, first)
        start = time.perf_counter()
        self.tree, ids, nxt, leaf = self.kernels.step(self.tree, expansion, current.astype(np.int32))
        ids, nxt, leaf = np.asarray(ids), np.asarray(nxt), np.asarray(leaf)
        self.timings["kernel_s"] += time.perf_counter() - start
        for b, children in new.items():
            expected = list(range(len(self.nodes[b]), len(self.nodes[b]) + len(children)))
            if ids[b, : len(children)].tolist() != expected:
                raise RuntimeError(f"rstar_jax/search/driver.py: node ids {ids[b]} out of step with host ({expected})")
            self.nodes[b].extend(children)
        self._walk(nxt)
        return nxt, leaf
