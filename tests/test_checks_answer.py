"""Answer checks: normalisation and every comparator (no sandbox needed for literal expectations)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from ise.checks import answer_verdict, last_number, normalise
from ise.records import AnswerCheck, Check, ShellCheck

CHECK: TypeAdapter[Check] = TypeAdapter(Check)


def answer(match: str, expected: str | None = None, **fields: Any) -> AnswerCheck:
    check = CHECK.validate_python(
        {"kind": "answer", "id": "a1", "description": "d", "match": match, **fields}
        | ({"expected": expected} if expected is not None else {})
    )
    assert isinstance(check, AnswerCheck)
    return check


def passes(check: AnswerCheck, text: str) -> bool:
    return answer_verdict(check, text, check.expected or "")[0]


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  42 \n", "42"),
        ("**42**", "42"),
        ("`/var/log/app.log`.", "/var/log/app.log"),
        ('"Nginx"', "nginx"),
        ("\u201cbackup-2024.tar.gz\u201d", "backup-2024.tar.gz"),
        ("```\nalice\n```", "alice"),
        ("```text\nalice\n```", "alice"),
        ("Two   spaces\tand\nlines!", "two spaces and lines"),
        ("*_x_*", "x"),
    ],
)
def test_normalisation_strips_markup_quotes_and_whitespace(raw: str, normalised: str) -> None:
    assert normalise(raw) == normalised


def test_case_is_kept_when_asked() -> None:
    assert normalise("**Alice**", case_sensitive=True) == "Alice"


def test_exact() -> None:
    check = answer("exact", "nginx")
    assert passes(check, "`nginx`")
    assert passes(check, "NGINX.")
    assert not passes(check, "nginx and redis")
    assert not passes(answer("exact", "nginx", case_sensitive=True), "NGINX")


def test_contains_respects_word_and_number_boundaries() -> None:
    check = answer("contains", "4")
    assert passes(check, "There are 4 files.")
    assert not passes(check, "There are 42 files.")
    assert not passes(check, "")
    assert passes(answer("contains", "app.log"), "The biggest is /var/log/app.log (3 MB).")
    assert not passes(answer("contains", "bob"), "bobby owns it")


def test_regex_is_searched_case_insensitively_unless_asked() -> None:
    check = answer("regex", r"\bport\s+8080\b")
    assert passes(check, "It listens on PORT 8080.")
    assert not passes(check, "It listens on port 80801")
    assert not passes(answer("regex", "Alice", case_sensitive=True), "alice")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("There are 42 lines.", 42),
        ("42 errors on 2024-01-03 at 12:30", 42),
        ("app2.log has 1,234 rows", 1234),
        ("-5 degrees", -5),
        ("it took 12MB", 12),
        ("3.5%", 3.5),
        ("version v1.2.3 only", None),
        ("none", None),
    ],
)
def test_the_value_of_a_text_is_its_last_number(text: str, value: float | None) -> None:
    assert last_number(text) == value


def test_number_with_tolerance() -> None:
    exact = answer("number", "42")
    assert passes(exact, "**42**")
    assert passes(exact, "I counted 42 error lines in app.log.")
    assert not passes(exact, "41")
    assert not passes(exact, "I do not know.")
    near = answer("number", "3.14", tolerance=0.01)
    assert passes(near, "about 3.141")
    assert not passes(near, "3.2")


def test_one_of_accepts_any_listed_answer_exactly() -> None:
    check = answer("one_of", options=["nginx", "nginx.service"])
    assert passes(check, "nginx.service")
    assert passes(check, "`NGINX`")
    assert not passes(check, "apache")
    assert answer_verdict(check, "apache", "")[1] == "the answer is none of the accepted ones"


def test_an_empty_answer_never_passes() -> None:
    for check in (answer("regex", ".*"), answer("contains", "x"), answer("one_of", options=["a"])):
        assert answer_verdict(check, "  ", check.expected or "") == (False, "the answer is empty")


def test_checks_without_kind_load_as_shell_checks() -> None:
    check = CHECK.validate_python({"id": "c1", "description": "d", "command": "true"})
    assert isinstance(check, ShellCheck)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "sql"}, "does not match any of the expected tags"),
        ({"kind": "answer", "match": "fuzzy", "expected": "x"}, "Input should be 'exact'"),
        ({"kind": "answer", "match": "regex", "expected": "(unclosed"}, "invalid regex"),
        ({"kind": "answer", "match": "number", "expected": "many"}, "is not a number"),
        ({"kind": "answer", "match": "exact"}, "`expected` is missing"),
        ({"kind": "answer", "match": "one_of"}, "one_of needs non-empty `options`"),
        ({"kind": "answer", "match": "exact", "expected": "x", "command": "echo x"}, "not both"),
        ({"kind": "answer", "match": "exact", "command": "  "}, "command is empty"),
    ],
)
def test_bad_answer_checks_are_refused_when_read(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CHECK.validate_python({"id": "a1", "description": "d", **fields})
