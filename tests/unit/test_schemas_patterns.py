"""Pattern: the schema files' patterns as the records check them.

A Pattern must say exactly what the regular expression says under ECMA-262 (JSON Schema's
dialect), however it gets there: the "no NUL" test with `in`, the bounded set of values that
matched before, Python's re with `$` made strict. The reference here is re.search on the source
with `$` rewritten by hand, independently of patterns.python_pattern.
"""

from __future__ import annotations

import re
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fields, records
from schemas.patterns import (
    _REMEMBER_CHARS,
    _REMEMBERED,
    NO_NUL_SOURCE,
    NotPattern,
    Pattern,
    plan,
    python_pattern,
)

# NotPattern (a value must not match) is the negation of the same machinery: its own tests are
# in test_schemas_environment.py.
PATTERNS: Final[dict[str, Pattern]] = {
    name: value
    for name, value in vars(fields).items()
    if isinstance(value, Pattern) and not isinstance(value, NotPattern)
}
# A value each pattern matches, to break in every way below.
MATCHING: Final = {
    "NO_NUL": "anything at all\n",
    "UUID": "0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
    "TIMESTAMP": "2024-05-01T12:00:00.5+02:00",
    "NOT_BLANK": "  x  ",
    "TARGET": "deploy@web[01-20].dc1:2222,!web05",
    "ENV_NAME": "PATH_2",
    "LABEL_NAME": "app.kubernetes.io/name",
    "HOST": "2001:db8::1",
    "SIGNAL": "KILL",
    "SHA256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "TOPIC": "fleetrun.requests",
    "PERCENT": "100%",
    "TEMPLATE_NAME": "restart_service2",
}


def ecma_search(source: str, value: str) -> bool:
    """ECMA-262's verdict: `$` at the end of a pattern matches only at the end of input."""
    if source.endswith("$") and not source.endswith("\\$"):
        source = source[:-1] + r"(?![\s\S])"
    return re.search(source, value) is not None


def test_every_pattern_has_a_matching_sample() -> None:
    assert set(MATCHING) == set(PATTERNS)
    for name, value in MATCHING.items():
        assert PATTERNS[name].matches(value), name
        assert ecma_search(PATTERNS[name].source, value), name


@pytest.mark.parametrize(
    ("source", "python"),
    [
        ("^[a-z]+$", r"^[a-z]+\Z"),
        ("[^ \\t]", "[^ \\t]"),  # unanchored: left alone
        ("^(100|[1-9]?[0-9])%$", r"^(100|[1-9]?[0-9])%\Z"),
    ],
)
def test_python_pattern_makes_dollar_mean_end_of_input(source: str, python: str) -> None:
    assert python_pattern(source) == python


@pytest.mark.parametrize("name", sorted(MATCHING))
def test_a_final_newline_never_matches_an_anchored_pattern(name: str) -> None:
    pattern, value = PATTERNS[name], MATCHING[name]
    for broken in (value + "\n", value + "\r\n", value + "\n\n"):
        expected = ecma_search(pattern.source, broken)
        assert pattern.matches(broken) is expected, (name, broken)
        if pattern.source.endswith("$") and not pattern.is_no_nul:
            assert expected is False
        assert pattern.matches(broken) is expected  # the second time, from any cache, too


def test_patterns_search_like_json_schema() -> None:
    # JSON Schema's `pattern` is a search, not a full match: only the anchors anchor.
    assert fields.NOT_BLANK.matches("\t\tx\n")
    assert not fields.NOT_BLANK.matches(" \t\r\n")
    assert fields.NOT_BLANK.matches("\u00a0")  # not one of the four blanks the pattern names


def test_no_nul_is_tested_with_in_and_means_what_the_pattern_says() -> None:
    assert [p for p in PATTERNS.values() if p.is_no_nul] == [fields.NO_NUL]
    assert fields.NO_NUL.source == NO_NUL_SOURCE == "^[^\\u0000]*$"
    for value in ("", "\n", "a\nb\n", "\u00a0", "🚀", "\x00", "a\x00", "\x00\n", "é\x00"):
        assert fields.NO_NUL.matches(value) is ecma_search(NO_NUL_SOURCE, value), repr(value)
    assert fields.NO_NUL.all_match(["a", "b\n", ""])
    assert not fields.NO_NUL.all_match(["a", "b", "\x00"])
    assert not fields.NO_NUL.matched  # nothing to remember: `in` is the whole test


ALPHABET: Final = "09af-AFZz:.T+%@_/[]!&,\n\r\t \x00é٣"


@st.composite
def _near(draw: st.DrawFn, name: str) -> str:
    value = MATCHING[name]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(value)))
        char = draw(st.sampled_from(ALPHABET))
        value = value[:at] + char + value[at + draw(st.integers(0, 1)) :]
    return value


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(MATCHING)).flatmap(lambda n: st.tuples(st.just(n), _near(n))))
def test_matches_agrees_with_ecma_regex(case: tuple[str, str]) -> None:
    name, value = case
    expected = ecma_search(PATTERNS[name].source, value)
    assert PATTERNS[name].matches(value) is expected
    assert PATTERNS[name].matches(value) is expected  # remembered or not, the same answer
    assert PATTERNS[name].all_match([MATCHING[name], value]) is expected
    assert PATTERNS[name].all_match({value: 1}) is expected  # keys of a mapping


def _fresh() -> Pattern:
    return Pattern("^[a-z0-9]+$", "lowercase letters and digits")


def test_remembered_values_are_bounded_and_only_matches() -> None:
    pattern = _fresh()
    for i in range(_REMEMBERED * 2 + 10):
        assert pattern.matches(f"v{i}")
        assert len(pattern.matched) <= _REMEMBERED
    assert pattern.matched  # it restarted, and kept remembering
    assert not pattern.matches("Nope")
    assert "Nope" not in pattern.matched
    assert pattern.matches("v0")  # forgotten when the set restarted, still matches


def test_long_values_and_unrepeated_fields_are_not_remembered() -> None:
    pattern = _fresh()
    long = "a" * (_REMEMBER_CHARS + 1)
    assert pattern.matches(long)
    assert pattern.matches("a" * _REMEMBER_CHARS)
    assert pattern.matched == {"a" * _REMEMBER_CHARS}
    assert fields.TIMESTAMP.remember is False
    assert fields.TIMESTAMP.matches(MATCHING["TIMESTAMP"])
    assert MATCHING["TIMESTAMP"] not in fields.TIMESTAMP.matched


def test_the_memory_is_not_fooled() -> None:
    pattern = _fresh()
    assert pattern.matches("web01")
    assert "web01" in pattern.matched
    # A value that only starts or ends like a remembered one is checked in full.
    for near in ("web01\n", "web01 ", " web01", "WEB01", "web01\x00", "web01\nweb01"):
        assert not pattern.matches(near), repr(near)
        assert near not in pattern.matched
    # Each pattern remembers for itself: what one pattern took, another still checks.
    assert fields.HOST.matches("web:01")
    assert not fields.SIGNAL.matches("web:01")
    assert not fields.TOPIC.matches("web:01")
    # all_match with every value remembered but one still checks that one.
    assert not pattern.all_match(["web01", "web01\n"])
    assert not pattern.all_match({"web01": 1, "-x": 2})


def test_patterns_are_the_ones_the_schema_files_write() -> None:
    # Spot checks (test_schemas_files compares every field): the sources are verbatim.
    assert fields.UUID.source.endswith("[0-9a-f]{12}$")
    assert fields.ENV_NAME.source == "^[A-Z_][A-Z0-9_]*$"
    assert fields.PERCENT.source == "^(100|[1-9]?[0-9])%$"


def _describe(record_type: type[Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    names = {id(p): n for n, p in vars(fields).items() if isinstance(p, Pattern)}
    return [(names[id(c.pattern)], c.where, c.names) for c in plan(record_type)]


# Every patterned string of every record, grouped as check_patterns tests them. A field added
# with a pattern, or a pattern lost from a field type, changes these lists.
PLANS: Final[dict[type[Any], list[tuple[str, str, tuple[str, ...]]]]] = {
    records.Request: [
        ("NO_NUL", "fields", ("principal",)),
        ("TIMESTAMP", "fields", ("submitted_at",)),
        ("UUID", "fields", ("request_id",)),
        ("TIMESTAMP", "optional", ("expires_at",)),
        ("NO_NUL", "optional", ("command",)),
        ("TARGET", "items", ("targets",)),
        ("ENV_NAME", "keys", ("env",)),
        ("ENV_NOT_DENIED", "keys", ("env",)),
        ("NO_NUL", "values", ("env",)),
        ("PERCENT", "optional", ("max_errors",)),
        ("LABEL_NAME", "keys", ("labels",)),
        ("NO_NUL", "values", ("labels",)),
        ("TEMPLATE_NAME", "optional", ("template",)),
        ("TEMPLATE_NAME", "keys", ("params",)),
        ("NO_NUL", "values", ("params",)),
        ("NO_NUL", "optional", ("signature",)),
    ],
    records.Result: [
        ("TIMESTAMP", "fields", ("started_at", "finished_at")),
        ("SHA256", "fields", ("stdout_sha256", "stderr_sha256")),
        ("NO_NUL", "fields", ("user", "collector")),
        ("HOST", "fields", ("host",)),
        ("UUID", "fields", ("request_id",)),
        ("SIGNAL", "optional", ("exit_signal",)),
        ("LABEL_NAME", "keys", ("labels",)),
        ("NO_NUL", "values", ("labels",)),
    ],
    records.Status: [
        ("NO_NUL", "fields", ("collector",)),
        ("TIMESTAMP", "fields", ("at",)),
        ("UUID", "fields", ("request_id",)),
        ("TIMESTAMP", "optional", ("submitted_at",)),
        ("NO_NUL", "optional", ("principal",)),
        ("NO_NUL", "optional", ("command",)),
        ("NO_NUL", "items", ("targets",)),
        ("LABEL_NAME", "keys", ("labels",)),
        ("NO_NUL", "values", ("labels",)),
        ("NO_NUL", "optional", ("reason",)),
        ("NO_NUL", "optional", ("cancelled_by",)),
        ("NO_NUL", "optional", ("cancel_reason",)),
        ("NO_NUL", "optional", ("key_fingerprint",)),
        ("NO_NUL", "optional", ("policy_rule",)),
        ("TEMPLATE_NAME", "optional", ("template",)),
        ("TEMPLATE_NAME", "keys", ("params",)),
        ("NO_NUL", "values", ("params",)),
    ],
    records.DeadLetter: [
        ("NO_NUL", "fields", ("instance",)),
        ("TIMESTAMP", "fields", ("at",)),
        ("TOPIC", "fields", ("source_topic",)),
        ("TIMESTAMP", "optional", ("source_timestamp",)),
        ("UUID", "optional", ("request_id",)),
    ],
    records.Cancel: [
        ("TIMESTAMP", "fields", ("submitted_at",)),
        ("NO_NUL", "fields", ("principal",)),
        ("UUID", "fields", ("request_id",)),
        ("NO_NUL", "optional", ("reason",)),
    ],
    records.ErrorInfo: [("NO_NUL", "fields", ("type", "message"))],
    records.StatusCounts: [],
}


@pytest.mark.parametrize("record_type", list(PLANS), ids=lambda t: t.__name__)
def test_plan_lists_every_patterned_string(record_type: type[Any]) -> None:
    assert _describe(record_type) == PLANS[record_type]


@pytest.mark.parametrize("record_type", list(PLANS), ids=lambda t: t.__name__)
def test_each_plan_reads_the_fields_it_names(record_type: type[Any]) -> None:
    for check in plan(record_type):
        assert set(check.names) <= set(record_type.__struct_fields__)
        if check.where == "fields":
            sample = type("Sample", (), dict.fromkeys(check.names, "v"))()
            assert tuple(check.get(sample)) == ("v",) * len(check.names)
