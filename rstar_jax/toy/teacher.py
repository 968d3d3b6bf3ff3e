"""The scripted bootstrap teacher of the toy domain: plays the paper's round-1 model (DeepSeek-Coder-V2 236B).

`ToyTeacher` is a `rstar_jax.interfaces.Policy`. For a prompt `build_prompt(question, node_texts)` it finds the
problem by its question, counts the steps already on the path (`<end_of_step>` / `<end_of_code>` after the
template) and writes the next step of the problem's intended computation, in the exact canonical text of
`toy.solution.code_steps`; once every code step is on the path it writes the answer step from the last observed
`<output>` (`solution.answer_step`). Each sample may carry one realistic mistake, drawn per sample:

- code steps (the assignments and the final `print`), at most one mistake each, so these three per-step rates
  must sum to at most 1:
  - `code_error`: code that raises at run time: an operand replaced by a name the program never defined (a
    quantity it forgot to compute, a misspelt or not-yet-assigned variable), or `print` of an undefined name;
  - `wrong_operation`: one operator swapped (`+ -> - *`, `- -> +`, `* -> + //`, `// -> * -`);
  - `wrong_operand`: a literal replaced by another number of the question or a near miss (±1, ±2, ±10), or a
    variable replaced by another defined one (also `print` of the wrong variable).
- answer steps: `answer_error`, the boxed value miscopied from the output (±1, swapped, dropped or doubled digit).

A wrong-value mistake is kept only if it changes the step's value: the new value must differ both from what the
canonical expression gives on this path and from the problem's intended value of that variable (expressions are
evaluated on the values the prompt's code assigns). When the drawn kind admits no such edit (e.g. no operator in
`x = 14`, or the final `print`) the other wrong-value kind is tried; a step that admits neither is written
correctly. So a rate is the frequency of steps whose value is actually wrong, and mistakes propagate: later
canonical steps use the wrong variable, so the final answer is wrong too. After a failed last code step (an error
line in `<output>`) the answer step states no boxed answer.

A sample ends at the earliest stop string of `stop` it contains (STOP); a step whose tag is not among the stop
strings ends there with EOS. `num_tokens` is the number of whitespace-separated words (tags count as words),
and a step longer than `max_tokens` words is cut after its `max_tokens`-th word (LENGTH).

Determinism: a prompt's samples depend only on (prompt, its seed, n, the rates): the generator is seeded with
`derive_seed("toy-teacher", prompt, seed)`, never with anything else of the batch.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import keyword
import math
import operator
import random
import re
from collections.abc import Callable, Mapping, Sequence

from rstar_jax.data import Problem
from rstar_jax.interfaces import FinishReason, Step
from rstar_jax.search.steps import CODE_END, OUTPUT_END, OUTPUT_START, STEP_END, build_prompt, derive_seed
from rstar_jax.toy import solution

__all__ = ["NO_ANSWER_STEP", "ToyTeacher"]

NO_ANSWER_STEP = "\n<answer>The code raised an error, so its output gives no answer.<end_of_answer>"

_SEED_TAG = "toy-teacher"
_MARK = "\x00"
_HEAD, _FOOT = build_prompt(_MARK, []).split(_MARK)
_ASSIGN = re.compile(r"^([A-Za-z_]\w*) = (.+)$", re.M)
_OUTPUT = re.compile(re.escape(OUTPUT_START) + r"(.*?)" + re.escape(OUTPUT_END), re.S)
_TOKEN = re.compile(r"//|[-+*/%]|\d+|[A-Za-z_]\w*")
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+\.\d+")
_SWAPS: Mapping[str, tuple[str, ...]] = {"+": ("-", "*"), "-": ("+",), "*": ("+", "//"), "//": ("*", "-")}
_BINOPS: Mapping[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_QUANTITY_NAMES = ("count", "amount", "per_group", "num_groups", "initial_count")
_RESULT_NAMES = ("answer", "result", "final_answer", "total_count")
_CODE_ERROR, _OPERATION, _OPERAND = "code_error", "wrong_operation", "wrong_operand"

_Env = Mapping[str, float]


class _Unevaluable(Exception):
    """An expression outside the toy arithmetic, or one that raises (undefined name, division by zero)."""


@functools.lru_cache(maxsize=1 << 14)
def _parse(expr: str) -> ast.expr | None:
    """The expression node of `expr`, or None when it is not a Python expression."""
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None


def _walk(node: ast.expr, env: _Env) -> float:
    """Evaluates the toy arithmetic subset (numbers, names of `env`, unary minus, + - * / // %)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, env)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        try:
            return _BINOPS[type(node.op)](_walk(node.left, env), _walk(node.right, env))
        except ArithmeticError as err:
            raise _Unevaluable from err
    raise _Unevaluable


def _evaluate(expr: str, env: _Env) -> float | None:
    """The value of a toy arithmetic expression over `env`, or None when it cannot be evaluated."""
    node = _parse(expr)
    if node is None:
        return None
    try:
        return _walk(node, env)
    except _Unevaluable:
        return None


@dataclasses.dataclass(frozen=True)
class _Path:
    """What the prompt's code has done: values it computed and every name it assigned (computed or not)."""

    values: dict[str, float]
    assigned: frozenset[str]


@functools.lru_cache(maxsize=1 << 12)
def _read_path(tail: str) -> _Path:
    """Replays the `var = expr` lines of the path text after the template (cached: siblings share prompts)."""
    values: dict[str, float] = {}
    assigned = set()
    for match in _ASSIGN.finditer(tail):
        name, expr = match.groups()
        assigned.add(name)
        value = _evaluate(expr, values)
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return _Path(values, frozenset(assigned))


@dataclasses.dataclass(frozen=True)
class _Slot:
    """One code step split around its editable expression: `prefix + expr + suffix` is the canonical text."""

    prefix: str
    expr: str
    suffix: str
    var: str | None  # the assigned variable; None for the final `print`
    gold: float  # the intended value of the step (of the printed variable for `print`)
    hint: str  # a word of the step's comment, for plausible undefined names


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A problem's canonical steps, prepared once."""

    texts: tuple[str, ...]
    slots: tuple[_Slot, ...]
    gold: Mapping[str, float]
    numbers: tuple[int, ...]


def _plan(problem: Problem) -> _Plan:
    """Canonical texts, editable slots, intended values and question numbers of one toy problem."""
    texts = tuple(solution.code_steps(problem))
    steps = problem.extra["steps"]
    gold: dict[str, float] = {}
    slots = []
    for text, step in zip(texts, steps, strict=False):
        value = _evaluate(step["expr"], gold)
        if value is None:
            raise ValueError(f"ToyTeacher: problem {problem.id!r}: cannot evaluate step {step['expr']!r}")
        gold[step["var"]] = value
        words = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", step["comment"])]
        suffix = f"\n{STEP_END}"
        prefix = text[: len(text) - len(suffix) - len(step["expr"])]
        if not text.endswith(step["expr"] + suffix):
            raise ValueError(f"ToyTeacher: problem {problem.id!r}: unexpected step text {text!r}")
        slots.append(_Slot(prefix, step["expr"], suffix, step["var"], value, words[-1] if words else "items"))
    last = steps[-1]["var"]
    print_suffix = f")\n{CODE_END}"
    prefix = texts[-1][: len(texts[-1]) - len(print_suffix) - len(last)]
    slots.append(_Slot(prefix, last, print_suffix, None, gold[last], "total"))
    numbers = tuple(sorted({int(x) for x in re.findall(r"\b\d+\b", problem.question)}))
    return _Plan(texts, tuple(slots), gold, numbers)


def _is_undefined(name: str, path: _Path) -> bool:
    """Whether running `name` after the path's code raises NameError (it is no builtin and was never assigned)."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not hasattr(builtins, name)
        and (name not in path.assigned)
    )


def _typos(name: str) -> list[str]:
    """Misspellings / wrong versions of a variable name."""
    out = [name.replace("_", ""), f"{name}s"] + ([] if name.startswith("total") else [f"total_{name}"])
    stem, _, version = name.rpartition("_")
    if stem and version.isdigit():
        out += [f"{stem}_{int(version) + 1}", f"{stem}{version}"]
    else:
        out.append(f"{name}_2")
    return [t for t in out if t != name]


def _undefined_names(slot: _Slot, token: str) -> list[str]:
    """Names a careless coder might write instead of `token` (a literal or a variable of `slot.expr`)."""
    if token.isdigit():  # a quantity it never computed: `shells`, `nina_shells`, `count`, ...
        names = [slot.hint, f"{slot.var}_{slot.hint}", *_QUANTITY_NAMES]
    elif slot.var is None:  # print of a misspelt or made-up result variable
        names = [*_typos(token), *_RESULT_NAMES]
    else:  # a misspelt / wrong-version variable, or the step's own variable before it exists
        names = [*_typos(token), slot.var]
    return list(dict.fromkeys(names))


def _miscopy(value: str, rng: random.Random) -> str:
    """A slip in copying a number: ±1, two adjacent digits swapped, a digit dropped or doubled."""
    if _FLOAT.fullmatch(value):
        return repr(float(value) + rng.choice((-1.0, 1.0)))
    number = int(value)
    sign, digits = ("-" if number < 0 else ""), str(abs(number))
    options = {str(number + 1), str(number - 1)}
    for i in range(len(digits)):
        options.add(sign + digits[:i] + digits[i] + digits[i:])
        if len(digits) > 1:
            options.add(sign + (digits[:i] + digits[i + 1 :]))
        if i + 1 < len(digits) and digits[i] != digits[i + 1]:
            options.add(sign + digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
    slips = {str(int(o)) for o in options if o not in ("", "-") and int(o) != number}
    return rng.choice(sorted(slips))


def _finish(text: str, stop: Sequence[str], max_tokens: int) -> Step:
    """The `Step` a model would return for `text`: cut at the earliest stop string, then at `max_tokens` words."""
    ends = [(text.find(s) + len(s), s) for s in stop if s in text]
    finish, hit = FinishReason.EOS, None
    if ends:
        end, hit = min(ends)
        text, finish = text[:end], FinishReason.STOP
    words = list(re.finditer(r"\S+", text))
    if len(words) > max_tokens:
        return Step(text[: words[max_tokens - 1].end()], FinishReason.LENGTH, None, max_tokens)
    return Step(text, finish, hit, max(len(words), 1))


class ToyTeacher:
    """The toy domain's bootstrap policy: canonical next steps with realistic mistakes (module docstring)."""

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        wrong_operand: float,
        wrong_operation: float,
        code_error: float,
        answer_error: float = 0.0,
    ):
        """Prepares every problem's steps.

        Args:
          problems: the toy problems it may be asked about (with `extra["steps"]`).
          wrong_operand, wrong_operation, code_error: per code step mistake rates, each in [0, 1], sum <= 1.
          answer_error: per answer step rate of a miscopied boxed value, in [0, 1].
        """
        rates = {
            _OPERAND: wrong_operand,
            _OPERATION: wrong_operation,
            _CODE_ERROR: code_error,
            "answer_error": answer_error,
        }
        for name, rate in rates.items():
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"ToyTeacher: {name} must be a probability in [0, 1], got {rate!r}")
        step_total = wrong_operand + wrong_operation + code_error
        if step_total > 1.0 + 1e-9:
            raise ValueError(
                f"ToyTeacher: wrong_operand + wrong_operation + code_error = {step_total:g} > 1; a code step carries "
                "at most one mistake, so these per-step rates must sum to at most 1"
            )
        self.wrong_operand, self.wrong_operation = float(wrong_operand), float(wrong_operation)
        self.code_error, self.answer_error = float(code_error), float(answer_error)
        self._plans: dict[str, _Plan] = {}
        for problem in problems:
            plan = _plan(problem)
            known = self._plans.setdefault(problem.question, plan)
            if known.texts != plan.texts:
                raise ValueError(f"ToyTeacher: problem {problem.id!r} repeats a question with different steps")

    def __repr__(self) -> str:
        return (
            f"ToyTeacher({len(self._plans)} problems, wrong_operand={self.wrong_operand}, "
            f"wrong_operation={self.wrong_operation}, code_error={self.code_error}, answer_error={self.answer_error})"
        )

    def generate(
        self, prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, seed: Sequence[int]
    ) -> list[list[Step]]:
        """`n` next steps per prompt (`rstar_jax.interfaces.Policy.generate`)."""
        if n < 0 or max_tokens < 1:
            raise ValueError(f"ToyTeacher.generate: need n >= 0 and max_tokens >= 1 (n={n}, max_tokens={max_tokens})")
        if len(seed) != len(prompts):
            raise ValueError(f"ToyTeacher.generate: {len(prompts)} prompts but {len(seed)} seeds")
        stops = tuple(s for s in stop if s)
        out = []
        for prompt, prompt_seed in zip(prompts, seed, strict=True):
            plan, tail = self._locate(prompt)
            rng = random.Random(derive_seed(_SEED_TAG, prompt, int(prompt_seed)))
            done = tail.count(STEP_END) + tail.count(CODE_END)
            if done >= len(plan.texts):
                outputs = _OUTPUT.findall(tail)
                texts = [self._answer(outputs[-1].strip() if outputs else "", rng) for _ in range(n)]
            else:
                path = _read_path(tail)
                texts = [self._code_step(plan, done, path, rng) for _ in range(n)]
            out.append([_finish(text, stops, max_tokens) for text in texts])
        return out

    def _locate(self, prompt: str) -> tuple[_Plan, str]:
        """The problem of a prompt and the path text after the template."""
        end = prompt.find(_FOOT, len(_HEAD))
        if not prompt.startswith(_HEAD) or end < 0:
            raise ValueError(f"ToyTeacher: not a build_prompt prompt: {prompt[:60]!r}...")
        question = prompt[len(_HEAD) : end]
        plan = self._plans.get(question)
        if plan is None:
            raise ValueError(
                f"ToyTeacher: unknown question {question[:60]!r}... (not among its {len(self._plans)} problems)"
            )
        return plan, prompt[end + len(_FOOT) :]

    def _answer(self, output: str, rng: random.Random) -> str:
        if not (_INT.fullmatch(output) or _FLOAT.fullmatch(output)):
            return NO_ANSWER_STEP
        if rng.random() < self.answer_error:
            output = _miscopy(output, rng)
        return solution.answer_step(output)

    def _code_step(self, plan: _Plan, k: int, path: _Path, rng: random.Random) -> str:
        u = rng.random()
        if u < self.code_error:
            kinds = [_CODE_ERROR]
        elif u < self.code_error + self.wrong_operation:
            kinds = [_OPERATION, _OPERAND]
        elif u < self.code_error + self.wrong_operation + self.wrong_operand:
            kinds = [_OPERAND, _OPERATION]
        else:
            return plan.texts[k]
        slot = plan.slots[k]
        for kind in kinds:
            edit = self._edit(plan, slot, path, kind, rng)
            if edit is not None:
                return slot.prefix + edit + slot.suffix
        return plan.texts[k]

    def _edit(self, plan: _Plan, slot: _Slot, path: _Path, kind: str, rng: random.Random) -> str | None:
        """A mistaken version of `slot.expr` of one kind, or None when that kind admits none."""
        options: list[tuple[int, int, str]] = []  # (start, end, replacement) of one token
        for token in _TOKEN.finditer(slot.expr):
            text, span = token.group(), token.span()
            if kind == _OPERATION:
                options += [(*span, new) for new in _SWAPS.get(text, ())]
            elif kind == _OPERAND and text.isdigit():
                near = {int(text) + d for d in (-10, -2, -1, 1, 2, 10)}
                options += [(*span, str(v)) for v in sorted(near | set(plan.numbers)) if v > 0 and v != int(text)]
            elif kind == _OPERAND and text.isidentifier():
                options += [(*span, name) for name in sorted(path.values) if name not in (text, slot.var)]
            elif kind == _CODE_ERROR and (text.isdigit() or text.isidentifier()):
                options += [(*span, name) for name in _undefined_names(slot, text) if _is_undefined(name, path)]
        rng.shuffle(options)
        env = {**plan.gold, **path.values}
        intended = {slot.gold, _evaluate(slot.expr, env)}
        for start, end, new in options:
            expr = slot.expr[:start] + new + slot.expr[end:]
            if kind == _CODE_ERROR:
                return expr
            value = _evaluate(expr, env)
            if value is not None and (isinstance(value, int) or math.isfinite(value)) and value not in intended:
                return expr
        return None
