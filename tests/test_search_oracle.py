"""A plain-Python rStar MCTS (one problem at a time, object nodes, float64), the oracle of the search tests.

Written from rstar_reference.md Part A / Part B §2.4-2.8 and §4 without using the search package's code (only
the seed contract `derive_seed` and the executor's `build_program` are shared), so that the jitted kernels and
the lock-step driver are checked against an independent reading of the rules.
"""

from __future__ import annotations

import math
import re

from rstar_jax.config import SearchConfig, UnvisitedRule
from rstar_jax.execution import build_program
from rstar_jax.search.steps import derive_seed

PROMPT = "<|user|>:\n{q}\n<|assistant|>: Let's think step by step and solve the problem with code."
ERRORS_LABEL = "Too many consecutive steps have code errors."
DEPTH_LABEL = "Fail to sove the problem within limited steps."


class Node:
    def __init__(self, tag, parent, depth):
        self.tag, self.parent, self.depth = tag, parent, depth
        self.children: list[Node] = []
        self.text = self.step = ""
        self.terminal = False
        self.kind = "none"
        self.visits, self.wsum, self.value, self.inited = 0, 0.0, 0.0, False
        self.errors, self.in_code = 0, False
        self.final_answer, self.answer, self.observation = "", None, None

    def update(self, v):
        if not self.inited:
            self.value, self.inited = v, True
        self.visits += 1
        self.wsum += v

    def update_recursive(self, v):
        node = self
        while node is not None:
            node.update(v)
            node = node.parent

    def q(self):
        return self.wsum / self.visits if self.visits else 0.0


def _outside_code(text: str, in_code: bool) -> str:
    pieces = re.split(r"(<code>|<end_of_code>)", text)
    out = []
    for piece in pieces:
        if piece == "<code>":
            in_code = True
        elif piece == "<end_of_code>":
            in_code = False
        elif not in_code:
            out.append(piece)
    return "".join(out)


def _is_answer(text, in_code):
    return text.endswith("<end_of_answer>") or "\\boxed" in _outside_code(text, in_code)


def _open_after(text, in_code):
    for tag in re.findall(r"<code>|<end_of_code>", text):
        in_code = tag == "<code>"
    return in_code


class OracleSearch:
    """One problem's search; `mode` is "terminal", "ppm_augmented" or "test"."""

    def __init__(self, problem, cfg: SearchConfig, mode, policy, executor, grader, ppm, run_seed):
        self.p, self.cfg, self.mode = problem, cfg, mode
        self.policy, self.executor, self.grader, self.ppm = policy, executor, grader, ppm
        self.seed = derive_seed("problem", run_seed, problem.id)
        self.root = Node("0", None, 0)

    def path(self, node):
        texts = []
        while node is not None:
            texts.append(node.text)
            node = node.parent
        return "".join(reversed(texts))

    def history(self, parent):
        """Part B §2.6: walk up from the parent, stop (excluded) at a node whose text shows an output or closes a
        code block, collect the steps of the code nodes (the root and answers have none), root first."""
        steps, node = [], parent
        while node.parent is not None and not re.search("<end_of_output>|<end_of_code>", node.text):
            steps.append(node.step)
            node = node.parent
        return steps[::-1]

    def uct(self, child, parent):
        if child.visits == 0:
            return math.inf if self.cfg.unvisited is UnvisitedRule.INF else 0.0
        if parent.visits == 0:
            return child.q()
        return child.q() + self.cfg.c_puct * math.sqrt(math.log(parent.visits) / child.visits)

    def select(self, node):
        if node.children or node.terminal:
            best, best_score = None, -math.inf
            for child in node.children:
                if not child.terminal and (best is None or self.uct(child, node) > best_score):
                    best, best_score = child, self.uct(child, node)
            if best is None:
                if not node.terminal:
                    node.kind = "exhausted"
                node.terminal = True
            return best
        return node

    def expand(self, node, rollout):
        cfg = self.cfg
        prompt = PROMPT.format(q=self.p.question) + self.path(node)
        seed = derive_seed(self.seed, rollout, node.depth)
        steps = self.policy.generate([prompt], cfg.samples_per_expansion, cfg.stop_strings, 10, [seed])[0]
        kept, seen = [], set()
        for st in steps:
            key = st.text[: len(st.text) - len(st.stop)] if st.stop else st.text
            if key not in seen:
                seen.add(key)
                kept.append(st)
        answers = [st for st in kept if _is_answer(st.text, node.in_code)]
        if cfg.first_answer_only and answers:
            kept = answers[:1]
        for k, st in enumerate(kept, start=1):
            child = Node(f"{node.tag}.{k}", node, node.depth + 1)
            child.step = child.text = st.text
            node.children.append(child)
            if _is_answer(st.text, node.in_code):
                child.terminal, child.kind = True, "answer"
                child.answer = self.grader.extract(st.text)
                child.final_answer = child.answer or ""
                if self.mode == "test":
                    v = float(self.ppm.score([prompt + child.text])[0])
                    child.update_recursive(v)
                else:
                    ok = child.answer is not None and self.grader.match(child.answer, self.p.answer)
                    child.update_recursive(1.0 if ok else -1.0)
                continue
            res = self.executor.run_batch([build_program(self.history(node) + [st.text])])[0]
            obs = res.output.strip() if res.ok else res.error
            child.observation = obs
            child.errors = 0 if res.ok else node.errors + 1
            dead = False
            if not res.ok and child.errors >= cfg.errors_threshold:
                closed = st.text if st.text.endswith("<end_of_code>") else st.text + "<end_of_code>"
                child.text = closed + "\n<output>" + obs + "<end_of_output>"
                child.terminal, child.kind, child.final_answer, dead = True, "code_errors", ERRORS_LABEL, True
            else:
                if st.text.endswith("<end_of_code>"):
                    child.text = st.text + "\n<output>" + obs + "<end_of_output>"
                child.in_code = _open_after(st.text, node.in_code)
                if child.depth > cfg.max_depth:
                    child.terminal, child.kind, child.final_answer, dead = True, "too_deep", DEPTH_LABEL, True
            if dead:
                child.update_recursive(-1.0) if cfg.backup_dead_ends else child.update(-1.0)
            elif self.mode != "terminal":
                child.update(float(self.ppm.score([prompt + child.text])[0]))

    def run_rollouts(self):
        for rollout in range(self.cfg.rollouts):
            current = self.select(self.root)
            for _ in range(self.cfg.max_depth):
                if current is None:
                    break
                if not current.children:
                    self.expand(current, rollout)
                current = self.select(current)
        return self

    def tree(self):
        """tag -> (text, visit_count, q, value, terminal, kind, final_answer, observation)."""
        out, stack = {}, [self.root]
        while stack:
            node = stack.pop()
            out[node.tag] = (
                node.text, node.visits, node.q(), node.value, node.terminal, node.kind, node.final_answer,
                node.observation,
            )  # fmt: skip
            stack.extend(node.children)
        return out


# ----------------------------------------------------------------------------------------------------------------
# The oracle test: kernels + lock-step driver == the plain-Python search, tree by tree.

import itertools  # noqa: E402

import pytest  # noqa: E402

from rstar_jax.data import Problem  # noqa: E402
from rstar_jax.search import BatchSearch, SearchMode, TreeKernels, batch_records  # noqa: E402
from rstar_jax.testing import BoxGrader, FakeExecutor, HashPPM, RandomStepPolicy  # noqa: E402

_SETTINGS = [
    dict(unvisited=UnvisitedRule.ZERO, first_answer_only=True, errors_threshold=1, backup_dead_ends=False),
    dict(unvisited=UnvisitedRule.INF, first_answer_only=False, errors_threshold=2, backup_dead_ends=True),
    dict(unvisited=UnvisitedRule.ZERO, first_answer_only=False, errors_threshold=1, backup_dead_ends=False),
    dict(unvisited=UnvisitedRule.INF, first_answer_only=True, errors_threshold=2, backup_dead_ends=False),
]


def _problems(count: int, salt: int) -> list[Problem]:
    return [Problem(f"oracle/{salt}/{i}", f"Question {salt}-{i}: what is {i % 7}?", str(i % 3)) for i in range(count)]


@pytest.mark.parametrize(("mode", "setting"), list(itertools.product(SearchMode, range(len(_SETTINGS)))))
def test_driver_matches_plain_python_oracle(mode, setting):
    """12 parametrisations x 50 problems: 200 random problems per mode, under every switch combination."""
    cfg = SearchConfig(rollouts=4, samples_per_expansion=3, max_depth=3, batch_problems=17, **_SETTINGS[setting])
    policy = RandomStepPolicy(weights=(4.0, 2.0, 1.5, 1.0, 0.5, 0.5))
    problems = _problems(50, setting)
    grader, ppm = BoxGrader(), HashPPM()
    kernels = TreeKernels.build(cfg)
    ours = []
    for lo in range(0, len(problems), cfg.batch_problems):
        batch = problems[lo : lo + cfg.batch_problems]
        search = BatchSearch(batch, cfg, mode, policy, FakeExecutor(), grader, ppm, 7, kernels).run_rollouts()
        ours.extend(batch_records(search))
    sizes = []
    for problem, record in zip(problems, ours, strict=True):
        expected = OracleSearch(problem, cfg, mode.value, policy, FakeExecutor(), grader, ppm, 7).run_rollouts().tree()
        got = record["rstar"]
        assert set(got) == set(expected), problem.id
        for tag, (text, visits, q, value, terminal, kind, final_answer, observation) in expected.items():
            node = got[tag]
            assert node["text"] == text, (problem.id, tag)
            assert node.get("observation") == observation, (problem.id, tag)  # the program run: the code history
            assert node["visit_count"] == visits, (problem.id, tag)
            assert node["q_value"] == pytest.approx(q, abs=1e-6), (problem.id, tag)
            assert node["value"] == pytest.approx(value, abs=1e-6), (problem.id, tag)
            assert (node["terminal"], node["terminal_kind"], node["final_answer"]) == (terminal, kind, final_answer)
        sizes.append(len(expected))
    assert max(sizes) > 5  # the random policy really grows trees
