"""Tests for rstar_jax.toy: answers checked by executing the intended computation, bands, wording, splits."""

import ast
import keyword
import re

import pytest

from rstar_jax.data import Problem, load_problems, normalize_question, write_problems
from rstar_jax.toy import BANDS, MAX_VALUE, ToySpec, generate_problems, generate_toy_splits

OPS_RANGE = {"gsm": (2, 3), "math": (3, 5), "olympiad": (5, 8)}
MAX_WORDS = {"gsm": 50, "math": 70, "olympiad": 100}
PER_BAND = 1000  # 3000 problems checked by execution


@pytest.fixture(scope="module")
def problems_by_band() -> dict[str, list[Problem]]:
    return {band: generate_problems(band, PER_BAND, seed=123) for band in BANDS}


class _Evaluator:
    """Restricted arithmetic: int literals, earlier names, + - * and exact //; counts operators."""

    def __init__(self) -> None:
        self.env: dict[str, int] = {}
        self.n_ops = 0
        self.literals: list[int] = []
        self.used: set[str] = set()

    def run(self, steps) -> int:
        for step in steps:
            var = step["var"]
            assert var.isidentifier() and not keyword.iskeyword(var), var
            assert var not in self.env, f"{var} assigned twice"
            compile(f"{var} = {step['expr']}  # {step['comment']}", "<step>", "exec")
            value = self._eval(ast.parse(step["expr"], mode="eval").body)
            assert 1 <= value <= MAX_VALUE, (step, value)
            self.env[var] = value
        return self.env[steps[-1]["var"]]

    def _eval(self, node: ast.AST) -> int:
        if isinstance(node, ast.Constant):
            assert type(node.value) is int, node.value
            self.literals.append(node.value)
            return node.value
        if isinstance(node, ast.Name):
            assert node.id in self.env, f"undefined {node.id}"
            self.used.add(node.id)
            return self.env[node.id]
        assert isinstance(node, ast.BinOp), ast.dump(node)
        left, right = self._eval(node.left), self._eval(node.right)
        self.n_ops += 1
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        assert isinstance(node.op, ast.FloorDiv), ast.dump(node.op)
        assert right != 0 and left % right == 0, f"inexact division {left} // {right}"
        return left // right


def test_answers_match_executed_steps(problems_by_band):
    for band, problems in problems_by_band.items():
        low, high = OPS_RANGE[band]
        seen_ops = set()
        for problem in problems:
            evaluator = _Evaluator()
            value = evaluator.run(problem.extra["steps"])
            assert problem.answer == str(value), problem
            assert problem.extra["band"] == band
            assert evaluator.n_ops == problem.extra["n_ops"] and low <= evaluator.n_ops <= high, problem
            seen_ops.add(evaluator.n_ops)
            # every stated number is a literal of the computation or a distractor's value, and back
            stated = sorted(int(n) for n in re.findall(r"\d+", problem.question))
            distractor_values = [item["value"] for item in problem.extra["distractors"]]
            assert stated == sorted(evaluator.literals + distractor_values), problem.question
            dead = [s["var"] for s in problem.extra["steps"][:-1] if s["var"] not in evaluator.used]
            assert not dead, (dead, problem)
        assert seen_ops == set(range(low, high + 1)), (band, seen_ops)


def test_distractors_are_in_the_text_and_only_in_olympiad(problems_by_band):
    for band, problems in problems_by_band.items():
        for problem in problems:
            distractors = problem.extra["distractors"]
            if band != "olympiad":
                assert distractors == ()
                continue
            assert 1 <= len(distractors) <= 2
            for item in distractors:
                assert item["text"] in problem.question and str(item["value"]) in item["text"]
                assert re.search(rf"\b{item['value']}\b", item["text"])
            # the distractor sentences are not the source of any step literal
            body = problem.question
            for item in distractors:
                body = body.replace(item["text"], "")
            evaluator = _Evaluator()
            evaluator.run(problem.extra["steps"])
            body_numbers = set(re.findall(r"\d+", body))
            assert all(str(n) in body_numbers for n in evaluator.literals), problem


def test_lengths_and_text(problems_by_band):
    for band, problems in problems_by_band.items():
        words = [len(p.question.split()) for p in problems]
        assert min(words) >= 12 and max(words) <= MAX_WORDS[band], (band, min(words), max(words))
        for problem in problems:
            assert problem.question.isascii() and problem.question.endswith("?")
            assert "<" not in problem.question and "\n" not in problem.question
            assert problem.id.startswith(f"toy/train/{band}/")
    means = [sum(len(p.question.split()) for p in problems_by_band[b]) / PER_BAND for b in BANDS]
    assert means == sorted(means), means  # harder bands are longer


def test_wording_varies(problems_by_band):
    # Replace numbers and capitalised names: what remains is the wording skeleton.
    for band, problems in problems_by_band.items():
        skeletons = {re.sub(r"\d+|\b[A-Z][a-z]+\b", "_", p.question) for p in problems}
        assert len(skeletons) > 0.5 * len(problems), (band, len(skeletons))
        first_sentences = {re.sub(r"\d+|\b[A-Z][a-z]+\b", "_", p.question.split(". ")[0]) for p in problems}
        assert len(first_sentences) >= 20, band
        answers = {p.answer for p in problems}
        assert len(answers) > 0.1 * len(problems), band
        texts = {normalize_question(p.question) for p in problems}
        assert len(texts) == len(problems)  # no duplicate question within a set


def test_deterministic_byte_for_byte(tmp_path):
    paths = []
    for name in ("a.jsonl", "b.jsonl"):
        problems = [p for band in BANDS for p in generate_problems(band, 100, seed=7, split="test")]
        write_problems(tmp_path / name, problems)
        paths.append(tmp_path / name)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded = load_problems(paths[0])
    assert loaded.problems == tuple(problems)
    assert loaded.duplicates == ()


def test_prefix_stable_and_seed_sensitive():
    long = generate_problems("math", 60, seed=1)
    assert generate_problems("math", 25, seed=1) == long[:25]
    other = generate_problems("math", 60, seed=2)
    shared = {p.question for p in long} & {p.question for p in other}
    assert len(shared) <= 2
    assert generate_problems("gsm", 0, seed=1) == []


def test_exclude_is_respected():
    first = generate_problems("gsm", 40, seed=5)
    excluded = frozenset(normalize_question(p.question) for p in first[:20])
    redrawn = generate_problems("gsm", 40, seed=5, exclude=excluded)
    assert not excluded & {normalize_question(p.question) for p in redrawn}
    assert redrawn[20:] == first[20:]  # later problems are drawn from their own keys


def test_splits_are_disjoint_and_sized():
    spec = ToySpec(train_per_band=400, test_per_band=100, seed=11)
    splits = generate_toy_splits(spec)
    assert [len(splits["train"]), len(splits["test"])] == [1200, 300]
    train_texts = {normalize_question(p.question) for p in splits["train"]}
    test_texts = {normalize_question(p.question) for p in splits["test"]}
    assert len(train_texts) == 1200 and len(test_texts) == 300 and not train_texts & test_texts
    assert [p.extra["band"] for p in splits["test"]] == [b for b in BANDS for _ in range(100)]
    assert splits["test"][0].id == "toy/test/gsm/000000" and splits["train"][-1].id == "toy/train/olympiad/000399"
    smaller = generate_toy_splits(ToySpec(train_per_band=10, test_per_band=100, seed=11, bands=BANDS))
    assert smaller["test"] == splits["test"]  # the test set does not depend on the train size
    only = generate_toy_splits(ToySpec(train_per_band=3, test_per_band=2, seed=11, bands=("olympiad",)))
    assert {p.extra["band"] for p in only["train"] + only["test"]} == {"olympiad"}


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"bands": ("gsm", "gsm")}, ValueError),
        ({"bands": ("easy",)}, ValueError),
        ({"bands": ()}, ValueError),
        ({"train_per_band": -1}, ValueError),
        ({"seed": 1.5}, TypeError),
    ],
)
def test_spec_validation(kwargs, error):
    base = {"train_per_band": 1, "test_per_band": 1, "seed": 0}
    with pytest.raises(error, match="ToySpec"):
        ToySpec(**{**base, **kwargs})


def test_generate_problems_argument_errors():
    with pytest.raises(ValueError, match="unknown toy band 'hard'; allowed: gsm, math, olympiad"):
        generate_problems("hard", 1, seed=0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_problems("gsm", -1, seed=0)
    with pytest.raises(ValueError, match="split must be"):
        generate_problems("gsm", 1, seed=0, split="a/b")
