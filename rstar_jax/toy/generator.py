"""Seeded generator of toy multi-step arithmetic word problems, in three difficulty bands.

Bands (operations = binary operators in the intended computation, see `rstar_jax.toy.story`):
  gsm       2-3 operations, numbers up to 30.
  math      3-5 operations, numbers up to 60.
  olympiad  5-8 operations, numbers up to 99, plus 1-2 distractor sentences whose numbers are unused.

Each problem is a `Problem` with id ``toy/{split}/{band}/{index:06d}``, the answer as a decimal string,
and ``extra = {"band", "n_ops", "steps", "distractors"}``: ``steps`` is the intended computation
(``[{"var", "expr", "comment"}, ...]``, clean Python over earlier vars), ``distractors`` is
``[{"text", "value"}, ...]``.

Determinism: problem ``i`` of (seed, split, band) is drawn from its own key, so it does not depend on
how many problems are requested; a draw whose normalised question repeats an earlier one (or one in
``exclude``) is redrawn with the next attempt key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType

from rstar_jax.data import Problem, normalize_question
from rstar_jax.toy import story as st
from rstar_jax.toy import vocab

BANDS = ("gsm", "math", "olympiad")


@dataclasses.dataclass(frozen=True)
class BandRule:
    """How problems of one band are drawn."""

    ops: tuple[int, int]  # inclusive range of the number of operations
    max_literal: int  # largest number stated in a sentence (group counts stay <= 9, group sizes <= 25)
    distractors: tuple[int, int]  # inclusive range of distractor sentences
    combine_chance: float  # chance the question asks for a sum/difference of two people (one operation)
    relate_weight: float  # weight of introducing a new person, vs 1-3 for the other operations


BAND_RULES: Mapping[str, BandRule] = MappingProxyType(
    {
        "gsm": BandRule(ops=(2, 3), max_literal=30, distractors=(0, 0), combine_chance=0.2, relate_weight=1.0),
        "math": BandRule(ops=(3, 5), max_literal=60, distractors=(0, 0), combine_chance=0.3, relate_weight=1.5),
        "olympiad": BandRule(ops=(5, 8), max_literal=99, distractors=(1, 2), combine_chance=0.4, relate_weight=2.0),
    }
)

_MAX_ATTEMPTS = 1000

_Op = Callable[[st.Story], bool]


def _menu(rule: BandRule) -> tuple[tuple[int, _Op, float], ...]:
    """(cost in operations, operation, weight) for every body operation."""
    return (
        (1, st.gain, 3.0),
        (1, st.lose, 3.0),
        (1, st.scale, 1.0),
        (1, st.share, 1.5),
        (1, st.relate, rule.relate_weight),
        (2, st.gain_groups, 2.0),
        (2, st.lose_groups, 2.0),
    )


def _add_distractors(story: st.Story, count: int) -> list[dict[str, object]]:
    rng, first = story.rng, story.people[0].name
    out = []
    for _ in range(count):
        template = rng.choice(vocab.DISTRACT)
        value = rng.int(2, story.max_literal)
        other_obj = rng.choice([o for o in vocab.OBJECTS if o != story.obj])
        fields = story.fields(w=first, o2=other_obj, d=value)
        if "{x}" in template:
            fields["x"] = story.take_name()
        text = template.format(**fields)
        story.sentences.insert(rng.int(1, len(story.sentences)), text)
        out.append({"text": text, "value": value})
    return out


def _draw(rule: BandRule, rng: st.ToyRng) -> tuple[st.Story, list[dict[str, object]]] | None:
    """One attempt at a problem; None when the random choices hit a dead end."""
    n_ops = rng.int(*rule.ops)
    combine = rng.chance(rule.combine_chance)
    body = n_ops - int(combine)
    story = st.Story(
        rng=rng,
        obj=rng.choice(vocab.OBJECTS),
        box=rng.choice(vocab.CONTAINERS),
        free_names=list(vocab.NAMES),
        max_literal=rule.max_literal,
    )
    st.start(story, with_groups=body >= 2 and rng.chance(0.25))
    menu = _menu(rule)
    for _ in range(8 * body):
        remaining = body - story.n_ops
        if remaining == 0:
            break
        if combine and len(story.people) == 1 and remaining == 1:
            st.relate(story)
            continue
        options = [(op, weight) for cost, op, weight in menu if cost <= remaining]
        rng.weighted([op for op, _ in options], [weight for _, weight in options])(story)
    if story.n_ops != body or (combine and len(story.people) < 2):
        return None
    distractors = _add_distractors(story, rng.int(*rule.distractors))
    if not st.ask(story, combine):
        return None
    return story, distractors


def generate_problem(band: str, key: str, problem_id: str) -> Problem:
    """The problem drawn from `key` (any string); retries internal dead ends deterministically."""
    rule = _band_rule(band)
    for attempt in range(_MAX_ATTEMPTS):
        drawn = _draw(rule, st.ToyRng(f"{key}#{attempt}"))
        if drawn is None:
            continue
        story, distractors = drawn
        extra = {"band": band, "n_ops": story.n_ops, "steps": story.steps, "distractors": distractors}
        answer = str(story.values[story.steps[-1]["var"]])
        return Problem(id=problem_id, question=" ".join(story.sentences), answer=answer, extra=extra)
    raise RuntimeError(f"toy generator: no valid {band!r} problem for key {key!r} in {_MAX_ATTEMPTS} attempts")


def _band_rule(band: str) -> BandRule:
    if band not in BAND_RULES:
        raise ValueError(f"unknown toy band {band!r}; allowed: {', '.join(BANDS)}")
    return BAND_RULES[band]


def generate_problems(
    band: str, n: int, seed: int, *, split: str = "train", exclude: Collection[str] = frozenset()
) -> list[Problem]:
    """`n` distinct problems of `band` for (`seed`, `split`).

    Args:
      band: one of `BANDS`.
      n: number of problems (>= 0).
      seed: integer seed; the same (seed, split, band) gives identical problems.
      split: split name, part of the seed key and of the ids (``toy/{split}/{band}/{i:06d}``).
      exclude: normalised questions (`normalize_question`) that must not be produced, e.g. another split.
    """
    _band_rule(band)
    if n < 0:
        raise ValueError(f"generate_problems: n must be >= 0, got {n}")
    if not split or "/" in split or any(ch.isspace() for ch in split):
        raise ValueError(f"generate_problems: split must be a non-empty name without '/' or spaces, got {split!r}")
    seen: set[str] = set()
    problems = []
    for index in range(n):
        problem_id = f"toy/{split}/{band}/{index:06d}"
        for redraw in range(_MAX_ATTEMPTS):
            problem = generate_problem(band, f"rstar_jax.toy/{seed}/{split}/{band}/{index}/{redraw}", problem_id)
            text = normalize_question(problem.question)
            if text not in seen and text not in exclude:
                break
        else:
            raise RuntimeError(f"toy generator: {problem_id} repeats earlier questions {_MAX_ATTEMPTS} times")
        seen.add(text)
        problems.append(problem)
    return problems
