"""Tests for rstar_jax.data: file formats, stable ids, bad-input errors, skip_bad, duplicates, writing."""

import json
import logging
from pathlib import Path

import pytest

from rstar_jax.data import (
    Problem,
    ProblemFormatError,
    ProblemSet,
    load_problems,
    normalize_question,
    write_problems,
)

RECORDS = [
    {"index": 0, "question": "What is 1+1?", "answer": "2"},
    {"index": 1, "question": "Roots of x^2=1?", "answer": ["1", "-1"], "level": 3},
    {"index": 2, "question": "Ünïcödé ４２ question\u2028with a line separator", "answer": "42"},
]


def _write(tmp_path: Path, text: str | bytes, name: str = "set.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _jsonl(records: list) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _expected(source: str) -> list[tuple[str, str, object]]:
    out = []
    for r in RECORDS:
        answer = tuple(r["answer"]) if isinstance(r["answer"], list) else r["answer"]
        out.append((f"{source}/{r['index']}", r["question"], answer))
    return out


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(RECORDS, indent=2, ensure_ascii=False),
        json.dumps({"example": RECORDS}, indent=4),
        _jsonl(RECORDS),
        "\ufeff" + _jsonl(RECORDS).replace("\n", "\r\n"),
        "\n\n" + _jsonl(RECORDS).replace("\n", "\n  \n") + "\n\n",
        "\ufeff" + json.dumps(RECORDS).replace(", ", ",\r\n"),
    ],
    ids=["json-list", "example-wrapper", "jsonl", "bom-crlf-jsonl", "blank-lines", "bom-crlf-json"],
)
def test_formats_detected_by_content(tmp_path, text):
    problems = load_problems(_write(tmp_path, text, "data.txt"), source="s")
    assert [(p.id, p.question, p.answer) for p in problems] == _expected("s")
    assert problems[1].extra == {"index": 1, "level": 3}
    assert problems.source == "s" and problems.skipped == () and problems.duplicates == ()


def test_default_source_is_file_stem_and_single_line_jsonl(tmp_path):
    problems = load_problems(_write(tmp_path, json.dumps(RECORDS[0]) + "\n", "tiny_set.jsonl"))
    assert problems.ids == ("tiny_set/0",)


def test_id_rules(tmp_path):
    records = [
        {"id": "given/a", "index": 5, "question": "q1", "answer": "1"},
        {"id": 7, "question": "q2", "answer": "2"},
        {"index": "x9", "question": "q3", "answer": "3"},
        {"question": "  Same  question ", "answer": "4"},
        {"question": "Same question", "answer": "4"},
        {"question": "Same question", "answer": "5"},
    ]
    path = _write(tmp_path, _jsonl(records))
    first = load_problems(path, source="src")
    again = load_problems(path, source="src")
    assert first.ids == again.ids
    assert first.ids[:3] == ("given/a", "src/7", "src/x9")
    assert first[0].extra == {"index": 5}
    hashed = first.ids[3:]
    assert all(i.startswith("src/q") for i in hashed)
    assert hashed[1] == hashed[0] + "-2"  # identical normalised content: same hash, suffixed
    assert hashed[2] != hashed[0]  # a different answer gives a different hash
    assert first.duplicates == (hashed,)
    assert first.duplicate_count == 2


def test_hash_id_ignores_position_and_format(tmp_path):
    record = {"question": "Ｆｕｌｌ width\r\nquestion", "answer": "7"}
    as_jsonl = load_problems(_write(tmp_path, _jsonl([{"question": "other", "answer": "1"}, record])), source="s")
    as_json = load_problems(_write(tmp_path, json.dumps([record]), "b.json"), source="s")
    assert as_jsonl.ids[1] == as_json.ids[0]


def _bad_cases() -> list[tuple[str, str, str, str]]:
    """(name, jsonl line 2, expected field, expected message fragment)."""
    return [
        ("missing-answer", '{"question": "q"}', "answer", "missing"),
        ("null-answer", '{"question": "q", "answer": null}', "answer", "null"),
        ("int-answer", '{"question": "q", "answer": 42}', "answer", "got int 42"),
        ("float-answer", '{"question": "q", "answer": 0.5}', "answer", "got float"),
        ("bool-answer", '{"question": "q", "answer": true}', "answer", "got bool"),
        ("empty-list", '{"question": "q", "answer": []}', "answer", "empty list"),
        ("list-with-int", '{"question": "q", "answer": ["1", 2]}', "answer", "list item 1"),
        ("missing-question", '{"answer": "1"}', "question", "missing"),
        ("empty-question", '{"question": "", "answer": "1"}', "question", "empty"),
        ("blank-question", '{"question": " \\t\\n ", "answer": "1"}', "question", "whitespace"),
        ("int-question", '{"question": 3, "answer": "1"}', "question", "must be a string"),
        ("surrogate-question", '{"question": "bad \\ud800", "answer": "1"}', "question", "surrogate"),
        ("surrogate-answer", '{"question": "q", "answer": "\\udfff"}', "answer", "surrogate"),
        ("surrogate-extra", '{"question": "q", "answer": "1", "note": ["\\ud83d"]}', "extra", "note"),
        ("float-index", '{"index": 1.5, "question": "q", "answer": "1"}', "index", "integer"),
        ("empty-id", '{"id": " ", "question": "q", "answer": "1"}', "id", "empty"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_record_errors_name_file_line_and_field(tmp_path, case):
    _, line, field, fragment = case
    path = _write(tmp_path, '{"question": "ok", "answer": "1"}\n' + line + "\n")
    with pytest.raises(ProblemFormatError) as info:
        load_problems(path)
    message = str(info.value)
    assert f"{path}:2" in message and f"'{field}'" in message and fragment in message, message
    assert info.value.field == field and info.value.location == f"{path}:2"


@pytest.mark.parametrize(
    "record, fragment",
    [(["not", "an", "object"], "record is a JSON list"), ("text", "record is a JSON str")],
)
def test_record_not_an_object(tmp_path, record, fragment):
    path = _write(tmp_path, json.dumps([RECORDS[0], record]), "a.json")
    with pytest.raises(ProblemFormatError, match=fragment) as info:
        load_problems(path)
    assert f"{path} record 1" in str(info.value)


def test_json_record_index_in_message(tmp_path):
    path = _write(tmp_path, json.dumps([RECORDS[0], RECORDS[1], {"question": "q"}]), "a.json")
    with pytest.raises(ProblemFormatError, match=r"a\.json record 2: field 'answer': missing"):
        load_problems(path)


def test_invalid_json_reports_line_and_column(tmp_path):
    bad_line = '  {"question": "q2", "answer": }'
    text = '[\n  {"question": "q", "answer": "1"},\n' + bad_line + "\n]\n"
    column = bad_line.index("}") + 1
    with pytest.raises(ProblemFormatError, match=rf"invalid JSON at line 3, column {column}:"):
        load_problems(_write(tmp_path, text, "a.json"))
    bad_line = '{"question": "q2", "answer": "2",}'
    path = _write(tmp_path, '{"question": "q", "answer": "1"}\n' + bad_line + "\n")
    column = bad_line.index(",}") + 2
    with pytest.raises(ProblemFormatError, match=rf"set\.jsonl:2: invalid JSON at line 2, column {column}:"):
        load_problems(path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        (b"\xff\xfe bad bytes", "not valid UTF-8 at byte 0"),
        (b'{\n  "records": []\n}\n', 'without an "example" list'),
        (b'{"example": {"a": 1}}', '"example" must be a JSON list'),
        (b'"just a string"', r"set\.jsonl:1: record is a JSON str"),
        (b"[]", "no valid problem records"),
        (b"\n\n", "no valid problem records"),
    ],
)
def test_whole_file_errors(tmp_path, text, fragment):
    with pytest.raises(ProblemFormatError, match=fragment):
        load_problems(_write(tmp_path, text))


def test_duplicate_explicit_id_names_both_records(tmp_path):
    records = [{"id": "a", "question": "q1", "answer": "1"}, {"id": "a", "question": "q2", "answer": "2"}]
    path = _write(tmp_path, json.dumps(records), "a.json")
    with pytest.raises(ProblemFormatError, match=r"record 1: duplicate id 'a' \(first at .*record 0\)"):
        load_problems(path)


def test_skip_bad_reports_and_warns(tmp_path, caplog):
    lines = [
        '{"index": 0, "question": "good", "answer": "1"}',
        '{"index": 1, "question": "", "answer": "1"}',
        "{broken json",
        '{"index": 0, "question": "dup id", "answer": "3"}',
        "",
        '{"index": 4, "question": "also good", "answer": ["a", "b"]}',
    ]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="rstar_jax.data"):
        problems = load_problems(path, source="s", skip_bad=True)
    assert problems.ids == ("s/0", "s/4")
    assert [s.location for s in problems.skipped] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "question" in problems.skipped[0].reason and "invalid JSON" in problems.skipped[1].reason
    assert "duplicate id" in problems.skipped[2].reason
    assert any("skipped 3 bad record" in r.getMessage() for r in caplog.records)


def test_jsonl_with_broken_first_line(tmp_path):
    path = _write(tmp_path, '{"question": "q", "answer": }\n{"index": 1, "question": "ok", "answer": "1"}\n')
    with pytest.raises(ProblemFormatError, match=r"set\.jsonl:1: invalid JSON at line 1"):
        load_problems(path)
    problems = load_problems(path, source="s", skip_bad=True)
    assert problems.ids == ("s/1",) and problems.skipped[0].location == f"{path}:1"


def test_duplicate_questions_reported_not_merged(tmp_path, caplog):
    records = [
        {"index": 0, "question": "How many  apples?", "answer": "1"},
        {"index": 1, "question": "Unique", "answer": "1"},
        {"index": 2, "question": "How many\napples?", "answer": "2"},
        {"index": 3, "question": "ｈow many apples?", "answer": "3"},
        {"index": 4, "question": "How many apples? ", "answer": "4"},
        {"index": 5, "question": "unique", "answer": "5"},
    ]
    with caplog.at_level(logging.WARNING, logger="rstar_jax.data"):
        problems = load_problems(_write(tmp_path, json.dumps(records), "a.json"), source="d")
    assert len(problems) == 6
    assert problems.duplicates == (("d/0", "d/2", "d/4"),)  # NFKC maps full-width 'ｈ' to 'h', not 'H'
    assert problems.duplicate_count == 2
    assert any("2 duplicate question record" in r.getMessage() for r in caplog.records)


def test_normalize_question():
    assert normalize_question("  a\u00a0b\r\n\tc  ") == "a b c"
    assert normalize_question("４２ ｘ") == "42 x"
    assert normalize_question("e\u0301") == "é"


def test_empty_answer_string_kept_and_reported(tmp_path):
    problems = load_problems(_write(tmp_path, _jsonl([{"index": 0, "question": "q", "answer": ""}])), source="s")
    assert problems.blank_answer_ids == ("s/0",)


def test_round_trip_and_atomic_write(tmp_path):
    source = load_problems(_write(tmp_path, _jsonl(RECORDS + [{"question": "no id", "answer": "9"}])), source="s")
    out = tmp_path / "out.jsonl"
    out.write_text("old content that must be replaced\n")
    assert write_problems(out, source) == 4
    again = load_problems(out, source="different")
    assert again.problems == source.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "set.jsonl"]  # no temp file left
    write_problems(tmp_path / "out2.jsonl", again)
    assert (tmp_path / "out2.jsonl").read_bytes() == out.read_bytes()


def test_write_rejects_duplicate_ids_and_keeps_old_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    dup = [Problem(id="a", question="q", answer="1"), Problem(id="a", question="q2", answer="2")]
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        write_problems(out, dup)
    assert out.read_text() == "old\n"


def test_problem_validation_and_freezing():
    problem = Problem(id="x/1", question="q", answer=["1", "2"], extra={"steps": [{"a": [1]}]})
    assert problem.answer == ("1", "2")
    assert problem.extra["steps"][0]["a"] == (1,)
    with pytest.raises(TypeError):
        problem.extra["new"] = 1  # type: ignore[index]
    assert hash(problem) == hash(Problem(id="x/1", question="q", answer=("1", "2")))
    with pytest.raises(ValueError, match="reserved key 'answer'"):
        Problem(id="x", question="q", answer="1", extra={"answer": "2"})
    with pytest.raises(ValueError, match="field 'answer'.*got int"):
        Problem(id="x", question="q", answer=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id must be a non-empty string"):
        Problem(id="", question="q", answer="1")


def test_problem_set_lookup_and_duplicate_ids():
    problems = (Problem(id="a", question="q", answer="1"), Problem(id="b", question="Q", answer="2"))
    problem_set = ProblemSet(source="t", problems=problems)
    assert problem_set.by_id("b") is problems[1] and problem_set[0] is problems[0]
    assert problem_set[:1] == problems[:1]
    with pytest.raises(KeyError, match="no problem with id 'c' in set 't'"):
        problem_set.by_id("c")
    with pytest.raises(ValueError, match="duplicate id 'a' at positions 0 and 1"):
        ProblemSet(source="t", problems=(problems[0], problems[0]))
