"""One toy word problem, built sentence by sentence together with its intended computation.

A story follows people who own some objects. Each sentence applies one operation to the person in
focus (the most recently introduced one) or introduces a new person relative to them, and appends the
matching assignments to `steps`: ``{"var", "expr", "comment"}`` where ``expr`` is a Python expression
over integer literals and earlier ``var`` names using ``+ - * //`` only (``//`` always divides exactly).
`n_ops` counts the binary operators in all expressions. Every intermediate value is an integer in
``[1, MAX_VALUE]``; the answer is the value of the last step.

Randomness comes only from `ToyRng`, which draws everything from `random.Random.random()` (the one
stream Python guarantees to stay the same across versions) seeded with a string, so a seed gives the
same problems byte for byte on any supported Python.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, TypeVar

from rstar_jax.toy import vocab

MAX_VALUE = 9999
"""Upper bound on every number in a toy problem (literals, intermediates and answer)."""

_T = TypeVar("_T")


class ToyRng:
    """Deterministic draws from a string key, built on `random.Random.random()` only."""

    def __init__(self, key: str):
        self._random = random.Random(key)

    def int(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high]`` (inclusive)."""
        if high < low:
            raise ValueError(f"ToyRng.int: empty range [{low}, {high}]")
        return min(high, low + int(self._random.random() * (high - low + 1)))

    def choice(self, items: Sequence[_T]) -> _T:
        return items[self.int(0, len(items) - 1)]

    def chance(self, probability: float) -> bool:
        return self._random.random() < probability

    def weighted(self, items: Sequence[_T], weights: Sequence[float]) -> _T:
        """One item, drawn with probability proportional to its weight."""
        threshold = self._random.random() * sum(weights)
        for item, weight in zip(items, weights, strict=True):
            threshold -= weight
            if threshold < 0:
                return item
        return items[-1]


@dataclasses.dataclass
class Person:
    name: str  # as written in the text, e.g. "Ava"
    var: str  # variable holding the person's current count
    value: int
    offset: bool = False  # introduced as "a more / fewer than" the previous person
    versions: int = 1


@dataclasses.dataclass
class Story:
    """Mutable builder state of one problem; see the module docstring."""

    rng: ToyRng
    obj: str
    box: tuple[str, str]  # (singular, plural)
    free_names: list[str]  # names not yet used in the text
    max_literal: int
    sentences: list[str] = dataclasses.field(default_factory=list)
    steps: list[dict[str, str]] = dataclasses.field(default_factory=list)
    people: list[Person] = dataclasses.field(default_factory=list)
    values: dict[str, int] = dataclasses.field(default_factory=dict)
    n_ops: int = 0

    @property
    def focus(self) -> Person:
        return self.people[-1]

    def take_name(self) -> str:
        name = self.rng.choice(self.free_names)
        self.free_names.remove(name)
        return name

    def fields(self, **given: Any) -> dict[str, Any]:
        """Format fields of a template; ``w`` defaults to the focus person, `given` overrides."""
        fields = {"o": self.obj, "box": self.box[0], "boxes": self.box[1], **given}
        if "w" not in fields:
            fields["w"] = self.focus.name
        return fields

    def say(self, template: str, **given: Any) -> None:
        """Appends the filled template; a bystander ``g`` is drawn only when the template uses one."""
        fields = self.fields(**given)
        if "{g}" in template:
            fields["g"] = self.take_name()
        self.sentences.append(template.format(**fields))

    def assign(self, stem: str, expr: str, value: int, comment: str, n_ops: int) -> str:
        """Appends ``var = expr`` with a fresh variable name derived from `stem`; returns the name."""
        if not 1 <= value <= MAX_VALUE:
            raise ValueError(f"toy story: value {value} of {expr!r} outside [1, {MAX_VALUE}]")
        var, copy = stem, 1
        while var in self.values:
            copy += 1
            var = f"{stem}_{copy}"
        self.values[var] = value
        self.steps.append({"var": var, "expr": expr, "comment": comment})
        self.n_ops += n_ops
        return var

    def update_focus(self, expr: str, value: int, comment: str, n_ops: int) -> None:
        person = self.focus
        person.versions += 1
        person.var = self.assign(f"{person.name.lower()}_{person.versions}", expr, value, comment, n_ops)
        person.value = value

    def add_person(self, name: str, expr: str, value: int, comment: str, n_ops: int, offset: bool = False) -> None:
        var = self.assign(name.lower(), expr, value, comment, n_ops)
        self.people.append(Person(name=name, var=var, value=value, offset=offset))


def start(story: Story, with_groups: bool) -> None:
    """Opening sentence: the first person and their count (``a``, or ``a * b`` with one operation)."""
    name, rng, top = story.take_name(), story.rng, story.max_literal
    if with_groups:
        a, b = rng.int(2, 9), rng.int(2, min(top, 25))
        story.say(rng.choice(vocab.START_GROUPS), w=name, a=a, b=b)
        story.add_person(name, f"{a} * {b}", a * b, f"{name} has {a} {story.box[1]} of {b}", n_ops=1)
    else:
        a = rng.int(5, top)
        story.say(rng.choice(vocab.START), w=name, a=a)
        story.add_person(name, str(a), a, f"{name} starts with {a} {story.obj}", n_ops=0)


def gain(story: Story) -> bool:
    person, a = story.focus, story.rng.int(2, story.max_literal)
    if person.value + a > MAX_VALUE:
        return False
    story.say(story.rng.choice(vocab.GAIN), a=a)
    story.update_focus(f"{person.var} + {a}", person.value + a, f"{person.name} gets {a} more", 1)
    return True


def lose(story: Story) -> bool:
    person = story.focus
    if person.value < 4:
        return False
    a = story.rng.int(2, min(story.max_literal, person.value - 2))
    story.say(story.rng.choice(vocab.LOSE), a=a)
    story.update_focus(f"{person.var} - {a}", person.value - a, f"{person.name} has {a} fewer", 1)
    return True


def scale(story: Story) -> bool:
    person, k = story.focus, story.rng.int(2, 5)
    if person.value * k > MAX_VALUE:
        return False
    story.say(story.rng.choice(vocab.SCALE), k=k)
    story.update_focus(f"{person.var} * {k}", person.value * k, f"{k} times as many", 1)
    return True


def _divisors(value: int) -> list[int]:
    return [k for k in range(2, 10) if value % k == 0 and value // k >= 2]


def share(story: Story) -> bool:
    person = story.focus
    divisors = _divisors(person.value)
    if not divisors:
        return False
    k = story.rng.choice(divisors)
    story.say(story.rng.choice(vocab.SHARE), k=k)
    story.update_focus(f"{person.var} // {k}", person.value // k, f"one of {k} equal parts", 1)
    return True


def _groups(story: Story, templates: tuple[tuple[str, str, str, str], ...], sign: int) -> bool:
    person, rng = story.focus, story.rng
    a, b = rng.int(2, 9), rng.int(2, min(story.max_literal, 25))
    new_value = person.value + sign * a * b
    if not 1 <= new_value <= MAX_VALUE:
        return False
    template, stem, product_comment, update_comment = rng.choice(templates)
    story.say(template, a=a, b=b)
    fields = story.fields(a=a, b=b)
    product = story.assign(stem, f"{a} * {b}", a * b, product_comment.format(**fields), 1)
    op = "+" if sign > 0 else "-"
    story.update_focus(f"{person.var} {op} {product}", new_value, update_comment.format(**fields), 1)
    return True


def gain_groups(story: Story) -> bool:
    return _groups(story, vocab.GAIN_GROUPS, +1)


def lose_groups(story: Story) -> bool:
    return _groups(story, vocab.LOSE_GROUPS, -1)


def relate(story: Story) -> bool:
    """Introduces a new person from the focus: ``w + a``, ``w - a``, ``w * k`` or ``w // k``."""
    person, rng = story.focus, story.rng
    kind = rng.int(0, 3)
    if kind == 0:
        amount = rng.int(2, story.max_literal)
        expr, value, templates, numbers = f"{person.var} + {amount}", person.value + amount, vocab.MORE, {"a": amount}
    elif kind == 1:
        if person.value < 4:
            return False
        amount = rng.int(2, min(story.max_literal, person.value - 2))
        expr, value, templates, numbers = f"{person.var} - {amount}", person.value - amount, vocab.FEWER, {"a": amount}
    elif kind == 2:
        k = rng.int(2, 5)
        expr, value, templates, numbers = f"{person.var} * {k}", person.value * k, vocab.TIMES, {"k": k}
    else:
        divisors = _divisors(person.value)
        if not divisors:
            return False
        k = rng.choice(divisors)
        expr, value, templates, numbers = f"{person.var} // {k}", person.value // k, vocab.PART, {"k": k}
    if value > MAX_VALUE:
        return False
    name = story.take_name()
    template = rng.choice(templates)
    story.say(template, n=name, **numbers)
    comment = template.format(**story.fields(n=name, **numbers)).rstrip(".")
    story.add_person(name, expr, value, comment, n_ops=1, offset=kind < 2)
    return True


def ask(story: Story, combine: bool) -> bool:
    """Closing question: about the focus, or (``combine``) the sum or difference of the last two people.

    A difference is asked only when it is not a number stated in the text; returns False when neither
    the sum (too large) nor the difference is possible.
    """
    rng, last = story.rng, story.focus
    if not combine:
        story.sentences.append(rng.choice(vocab.ASK_NOW).format(**story.fields()))
        return True
    other = story.people[-2]
    can_diff = last.value != other.value and not (last.offset and last.versions == 1)
    can_sum = other.value + last.value <= MAX_VALUE
    if not (can_diff or can_sum):
        return False
    if can_diff and (not can_sum or rng.chance(0.4)):
        big, small = (last, other) if last.value > other.value else (other, last)
        template = rng.choice(vocab.ASK_MORE)
        story.sentences.append(template.format(w=big.name, n=small.name, o=story.obj))
        story.assign("diff", f"{big.var} - {small.var}", big.value - small.value, f"{big.name} minus {small.name}", 1)
        return True
    template = rng.choice(vocab.ASK_TOGETHER)
    story.sentences.append(template.format(w=other.name, n=last.name, o=story.obj))
    story.assign("total", f"{other.var} + {last.var}", other.value + last.value, f"{other.name} and {last.name}", 1)
    return True
