"""Reading and writing problem files (JSON list, ``{"example": [...]}`` or JSONL).

The format is detected from the content, not the file name: a text starting with ``[`` is a JSON list;
one starting with ``{`` is ``{"example": [...]}`` when it parses as one JSON object with that key, and
JSONL otherwise. A UTF-8 BOM, CRLF line ends and blank lines are tolerated.

Ids (stable across re-reads of the same file):
  * a string ``id`` field is used verbatim (so files written by `write_problems` round-trip);
  * an integer ``id``, else an ``index`` field (int or string), gives ``{source}/{value}``;
  * otherwise ``{source}/q{h}``, ``h`` = first 12 hex digits of SHA-256 over the normalised question and
    the answer; records with identical content get ``-2``, ``-3`` ... in file order.
An explicit id (``id`` or ``index``) that repeats is an error naming both records.

Bad records raise `ProblemFormatError` naming the file, the line (JSONL) or record index (JSON, 0-based)
and the field; with ``skip_bad=True`` they are skipped, listed in `ProblemSet.skipped` and counted in a
warning. Whole-file errors (not UTF-8, invalid JSON list, wrong top-level type, no records) always raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rstar_jax.data.problem import (
    RESERVED_KEYS,
    Answer,
    Problem,
    ProblemFormatError,
    ProblemSet,
    SkippedRecord,
    check_extra,
    check_question,
    coerce_answer,
    find_surrogate,
    normalize_question,
)

_log = logging.getLogger(__name__)

_Raw = tuple[str, Any]  # (location, decoded JSON value or a ProblemFormatError for an unparsable line)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProblemFormatError(f"{path}: not valid UTF-8 at byte {err.start}: {err.reason}") from None
    return text.removeprefix("\ufeff")


def _json_error(where: str, err: json.JSONDecodeError, line: int | None = None) -> ProblemFormatError:
    lineno = err.lineno if line is None else line
    return ProblemFormatError(f"{where}: invalid JSON at line {lineno}, column {err.colno}: {err.msg}", location=where)


def _parse_jsonl(path: Path, lines: list[str]) -> Iterator[_Raw]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        location = f"{path}:{lineno}"
        try:
            yield location, json.loads(line)
        except json.JSONDecodeError as err:
            yield location, _json_error(location, err, line=lineno)


def _is_jsonl(lines: list[str]) -> bool:
    """True when some non-blank line is a complete JSON object on its own."""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                if isinstance(json.loads(stripped), dict):
                    return True
            except json.JSONDecodeError:
                continue
    return False


def _raw_records(path: Path, text: str) -> list[_Raw]:
    """Splits the file into (location, value) pairs; detects the format from the content."""
    stripped = text.lstrip()
    lines = text.split("\n")  # not splitlines(): U+2028 etc. may sit inside JSON strings
    if not stripped.startswith(("[", "{")):
        return list(_parse_jsonl(path, lines))
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as err:
        if stripped.startswith("{") and (err.msg == "Extra data" or _is_jsonl(lines)):
            return list(_parse_jsonl(path, lines))
        raise _json_error(str(path), err) from None
    if isinstance(whole, dict):
        if "example" in whole:
            whole = whole["example"]
            if not isinstance(whole, list):
                raise ProblemFormatError(
                    f'{path}: "example" must be a JSON list, got {type(whole).__name__}', location=str(path)
                )
        elif sum(1 for line in lines if line.strip()) == 1:
            return list(_parse_jsonl(path, lines))  # a one-record JSONL file
        else:
            raise ProblemFormatError(
                f'{path}: top-level JSON object without an "example" list (expected a list, '
                '{"example": [...]} or one object per line)',
                location=str(path),
            )
    if not isinstance(whole, list):
        raise ProblemFormatError(
            f"{path}: top-level JSON value is a {type(whole).__name__}, expected a list", location=str(path)
        )
    return [(f"{path} record {i}", value) for i, value in enumerate(whole)]


def _explicit_id(record: dict[str, Any], source: str) -> str | None:
    for key in ("id", "index"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ProblemFormatError(f"must be a string or an integer, got {type(value).__name__} {value!r}", field=key)
        if isinstance(value, str):
            if not value.strip():
                raise ProblemFormatError("empty or whitespace-only", field=key)
            pos = find_surrogate(value)
            if pos is not None:
                raise ProblemFormatError(f"contains a lone surrogate at character {pos}", field=key)
            if key == "id":
                return value
        return f"{source}/{value}"
    return None


_Fields = tuple[str | None, str, Answer, dict[str, Any]]  # (explicit id, question, answer, extra)


def _parse_record(location: str, value: Any, source: str) -> _Fields:
    """Validates one raw record; raises ProblemFormatError naming location and field."""
    if isinstance(value, ProblemFormatError):
        raise value
    if not isinstance(value, dict):
        raise ProblemFormatError(
            f"{location}: record is a JSON {type(value).__name__}, expected an object", location=location
        )
    try:
        explicit = _explicit_id(value, source)
        for name in ("question", "answer"):
            if name not in value:
                raise ProblemFormatError("missing", field=name)
        try:
            question = check_question(value["question"])
        except ValueError as err:
            raise ProblemFormatError(str(err), field="question") from None
        try:
            answer = coerce_answer(value["answer"])
        except ValueError as err:
            raise ProblemFormatError(str(err), field="answer") from None
        extra = {key: item for key, item in value.items() if key not in RESERVED_KEYS}
        try:
            check_extra(extra)
        except ValueError as err:
            raise ProblemFormatError(str(err), field="extra") from None
    except ProblemFormatError as err:
        raise ProblemFormatError(
            f"{location}: field {err.field!r}: {err}", location=location, field=err.field
        ) from None
    return explicit, question, answer, extra


def _content_id(question: str, answer: Answer, source: str) -> str:
    answer_key = json.dumps(list(answer) if isinstance(answer, tuple) else answer, ensure_ascii=False)
    digest = hashlib.sha256(f"{normalize_question(question)}\x1e{answer_key}".encode()).hexdigest()
    return f"{source}/q{digest[:12]}"


def load_problems(path: str | os.PathLike[str], *, source: str | None = None, skip_bad: bool = False) -> ProblemSet:
    """Reads a problem file into a `ProblemSet`.

    Args:
      path: JSON list, ``{"example": [...]}`` or JSONL file (detected from the content).
      source: set name used in derived ids (default: the file stem).
      skip_bad: skip malformed records (listed in ``.skipped``, counted in a warning) instead of raising.

    Raises:
      ProblemFormatError: a bad record (when not skipping) or a whole-file problem, naming file, line or
        record index, and field.
      FileNotFoundError: no such file.
    """
    path = Path(path)
    source = path.stem if source is None else source
    if not source.strip() or any(ch.isspace() for ch in source):
        raise ValueError(f"load_problems({path}): source must be a non-empty name without spaces, got {source!r}")
    parsed: list[_Fields] = []
    skipped: list[SkippedRecord] = []
    explicit_at: dict[str, str] = {}
    for location, value in _raw_records(path, _read_text(path)):
        try:
            fields = _parse_record(location, value, source)
            explicit = fields[0]
            if explicit is not None and explicit in explicit_at:
                raise ProblemFormatError(
                    f"{location}: duplicate id {explicit!r} (first at {explicit_at[explicit]})",
                    location=location,
                    field="id",
                )
        except ProblemFormatError as err:
            if not skip_bad:
                raise
            skipped.append(SkippedRecord(location=location, reason=str(err).removeprefix(f"{location}: ")))
            continue
        if explicit is not None:
            explicit_at[explicit] = location
        parsed.append(fields)

    problems: list[Problem] = []
    taken = set(explicit_at)
    for explicit, question, answer, extra in parsed:
        problem_id = explicit
        if problem_id is None:
            base = _content_id(question, answer, source)
            problem_id, copy = base, 1
            while problem_id in taken:
                copy += 1
                problem_id = f"{base}-{copy}"
            taken.add(problem_id)
        problems.append(Problem(id=problem_id, question=question, answer=answer, extra=extra))
    if skipped:
        first = skipped[0]
        _log.warning("%s: skipped %d bad record(s); first: %s: %s", path, len(skipped), first.location, first.reason)
    if not problems:
        raise ProblemFormatError(f"{path}: no valid problem records ({len(skipped)} skipped)", location=str(path))
    problem_set = ProblemSet(source=source, problems=tuple(problems), skipped=tuple(skipped), path=str(path))
    blank = problem_set.blank_answer_ids
    if blank:
        _log.warning("%s: %d record(s) with an empty answer (kept; ungradable), e.g. %s", path, len(blank), blank[0])
    if problem_set.duplicates:
        _log.warning(
            "%s: %d duplicate question record(s) in %d group(s) (kept; see ProblemSet.duplicates), e.g. %s",
            path,
            problem_set.duplicate_count,
            len(problem_set.duplicates),
            problem_set.duplicates[0],
        )
    return problem_set


def write_problems(path: str | os.PathLike[str], problems: Iterable[Problem]) -> int:
    """Writes problems as JSONL (one `Problem.to_record()` per line), atomically; returns the count.

    The file is written to a temporary sibling, fsynced, then moved over `path` with `os.replace`, so a
    crash leaves either the old file or the new one. Ids must be unique. `load_problems` on the result
    gives the same ids, questions, answers and extras.
    """
    path = Path(path)
    seen: set[str] = set()
    lines = []
    for problem in problems:
        if problem.id in seen:
            raise ValueError(f"write_problems({path}): duplicate id {problem.id!r}")
        seen.add(problem.id)
        lines.append(json.dumps(problem.to_record(), ensure_ascii=False) + "\n")
    payload = "".join(lines).encode("utf-8")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return len(lines)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return len(lines)
