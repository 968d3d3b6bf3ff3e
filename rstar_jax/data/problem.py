"""Problems and problem sets: the record type every stage of rstar_jax reads.

A `Problem` is one question with its ground-truth answer and a stable id; a `ProblemSet` is an ordered,
id-unique collection of problems plus what the loader found on the way (skipped records, duplicate
questions). Both are immutable: `Problem.extra` is deep-frozen (dicts become read-only mappings, lists
become tuples), and `Problem.to_record()` turns it back into plain JSON data.

Duplicate questions are REPORTED, never merged: two problems are duplicates when their questions are
equal after `normalize_question` (Unicode NFKC, then every run of whitespace collapsed to one space,
ends stripped). `ProblemSet.duplicates` holds the groups of ids (in set order, groups ordered by first
member); `ProblemSet.duplicate_count` is the number of records beyond the first of each group.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, overload

Answer = str | tuple[str, ...]
"""A ground-truth answer: one string, or several strings (e.g. all roots of an equation)."""

RESERVED_KEYS = ("id", "question", "answer")
"""Record keys that are `Problem` fields, so they never appear in `Problem.extra`."""

_SURROGATE = re.compile("[\ud800-\udfff]")


class ProblemFormatError(ValueError):
    """A problem file or record is malformed.

    Attributes:
      location: where (``path:line`` for JSONL, ``path record i`` for JSON, or ``path``), or None.
      field: the offending field (``question``, ``answer``, ``id`` ...), or None for whole-record errors.
    """

    def __init__(self, message: str, *, location: str | None = None, field: str | None = None):
        super().__init__(message)
        self.location = location
        self.field = field


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """A record that `load_problems(..., skip_bad=True)` dropped: where it was and why."""

    location: str
    reason: str


def normalize_question(text: str) -> str:
    """The duplicate / content-hash key of a question: NFKC, whitespace runs -> one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def find_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate code point in `text` (unencodable as UTF-8), or None."""
    match = _SURROGATE.search(text)
    return None if match is None else match.start()


def check_question(value: Any) -> str:
    """Returns `value` if it is a usable question, else raises ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError("empty or whitespace-only")
    _check_no_surrogate(value)
    return value


def coerce_answer(value: Any) -> Answer:
    """Checks an answer and returns it as `str` or `tuple[str, ...]`; raises ValueError with the reason.

    Numbers are rejected rather than stringified: `str(0.1 + 0.2)` or `1e-05` would silently become the
    ground truth. A list must hold at least one item and nothing but strings. An empty string is accepted
    (real benchmark files contain some: gaokao2023en 2, omni 9); see `has_blank_answer`.
    """
    if value is None:
        raise ValueError("missing (null)")
    if isinstance(value, str):
        _check_no_surrogate(value)
        return value
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("empty list")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"list item {i} must be a string, got {type(item).__name__} {item!r}")
            _check_no_surrogate(item, f"list item {i}: ")
        return tuple(value)
    raise ValueError(
        f"must be a string or a list of strings, got {type(value).__name__} {value!r} "
        '(write numbers as strings, e.g. "42")'
    )


def has_blank_answer(answer: Answer) -> bool:
    """True when the answer holds no non-whitespace text (such a problem can never be graded correct)."""
    items = (answer,) if isinstance(answer, str) else answer
    return not any(item.strip() for item in items)


def _check_no_surrogate(text: str, prefix: str = "") -> None:
    pos = find_surrogate(text)
    if pos is not None:
        raise ValueError(f"{prefix}contains a lone surrogate U+{ord(text[pos]):04X} at character {pos}")


def freeze(value: Any) -> Any:
    """Deep-freezes JSON-like data: mappings -> read-only mappings, lists/tuples -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of `freeze` for JSON output: mappings -> dicts, tuples -> lists."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def check_extra(extra: Mapping[str, Any]) -> None:
    """Raises ValueError naming the key when `extra` has a reserved key, a non-str key or a surrogate."""
    for key in extra:
        if not isinstance(key, str):
            raise ValueError(f"extra key {key!r} must be a string")
        if key in RESERVED_KEYS:
            raise ValueError(f"extra may not contain the reserved key {key!r}")
        try:
            _check_strings(extra[key])
            _check_no_surrogate(key)
        except ValueError as err:
            raise ValueError(f"extra field {key!r}: {err}") from None


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        _check_no_surrogate(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_no_surrogate(key)
            _check_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_strings(item)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem.

    Attributes:
      id: stable, unique within its set (e.g. ``math500/17``, ``toy/train/gsm/000123``).
      question: the text given to the policy, kept exactly as read (no normalisation).
      answer: ground truth; a list answer is a tuple of strings.
      extra: every other field of the record (e.g. ``index``, ``level``), deep-frozen.
    """

    id: str
    question: str
    answer: Answer
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"Problem id must be a non-empty string, got {self.id!r}")
        for name, check in (("question", check_question), ("answer", coerce_answer)):
            try:
                value = check(getattr(self, name))
            except ValueError as err:
                raise ValueError(f"Problem {self.id!r}: field {name!r}: {err}") from None
            object.__setattr__(self, name, value)
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"Problem {self.id!r}: extra must be a mapping, got {type(self.extra).__name__}")
        try:
            _check_no_surrogate(self.id)
            check_extra(self.extra)
        except ValueError as err:
            raise ValueError(f"Problem {self.id!r}: {err}") from None
        object.__setattr__(self, "extra", freeze(self.extra))

    def to_record(self) -> dict[str, Any]:
        """Plain JSON data: ``{"id", "question", "answer", **extra}`` (tuple answer -> list)."""
        answer = list(self.answer) if isinstance(self.answer, tuple) else self.answer
        return {"id": self.id, "question": self.question, "answer": answer, **thaw(self.extra)}


def find_duplicate_groups(problems: Iterable[Problem]) -> tuple[tuple[str, ...], ...]:
    """Groups of ids whose questions are equal under `normalize_question` (groups of size >= 2 only)."""
    groups: dict[str, list[str]] = {}
    for problem in problems:
        groups.setdefault(normalize_question(problem.question), []).append(problem.id)
    return tuple(tuple(ids) for ids in groups.values() if len(ids) > 1)


@dataclasses.dataclass(frozen=True)
class ProblemSet(Sequence[Problem]):
    """An ordered set of problems with unique ids.

    Attributes:
      source: short name of the set (a benchmark name, or the file stem); prefix of index-derived ids.
      problems: the problems, in file order. All records are kept, duplicates included.
      skipped: records dropped by ``skip_bad=True`` (empty otherwise).
      path: the file read, or None for generated sets.
      duplicates: computed; groups of ids with the same normalised question (see module docstring).
    """

    source: str
    problems: tuple[Problem, ...]
    skipped: tuple[SkippedRecord, ...] = ()
    path: str | None = None
    duplicates: tuple[tuple[str, ...], ...] = dataclasses.field(init=False)
    _by_id: Mapping[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = tuple(self.problems)
        by_id: dict[str, int] = {}
        for i, problem in enumerate(problems):
            if problem.id in by_id:
                raise ValueError(
                    f"ProblemSet {self.source!r}: duplicate id {problem.id!r} at positions {by_id[problem.id]} and {i}"
                )
            by_id[problem.id] = i
        object.__setattr__(self, "problems", problems)
        object.__setattr__(self, "skipped", tuple(self.skipped))
        object.__setattr__(self, "duplicates", find_duplicate_groups(problems))
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    @property
    def duplicate_count(self) -> int:
        """Records beyond the first of each duplicate group (= records a dedupe would drop)."""
        return sum(len(group) - 1 for group in self.duplicates)

    @property
    def blank_answer_ids(self) -> tuple[str, ...]:
        """Ids of problems whose answer is empty or whitespace-only (kept, but ungradable)."""
        return tuple(problem.id for problem in self.problems if has_blank_answer(problem.answer))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(problem.id for problem in self.problems)

    def by_id(self, problem_id: str) -> Problem:
        """The problem with this id; KeyError naming the set if absent."""
        try:
            return self.problems[self._by_id[problem_id]]
        except KeyError:
            raise KeyError(f"no problem with id {problem_id!r} in set {self.source!r}") from None

    def __len__(self) -> int:
        return len(self.problems)

    @overload
    def __getitem__(self, index: int) -> Problem: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Problem, ...]: ...

    def __getitem__(self, index: int | slice) -> Problem | tuple[Problem, ...]:
        return self.problems[index]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)
