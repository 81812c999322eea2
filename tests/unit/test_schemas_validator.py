"""The JSON Schema compiler: its keyword subset, its messages and its edge cases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import SchemaError
from schemas.checks import _BASE64_PATTERN, _NO_NUL_PATTERN, _SHA256_PATTERN
from schemas.errors import SchemaDefinitionError
from schemas.messages import format_path, json_equal
from schemas.validator import compile_pattern, compile_schema


@pytest.mark.parametrize(
    "schema",
    [
        {"prefixItems": [{}]},
        {"unevaluatedProperties": False},
        {"exclusiveMinimum": 0},
        {"properties": {"a": {"$ref": "other.json#/x"}}},
        {"properties": {"a": {"$ref": "#/$defs/x", "maxLength": 3}}, "$defs": {"x": {}}},
        {"pattern": "\\d+"},
        {"pattern": "a$b"},
        True,
    ],
)
def test_unsupported_schemas_are_refused_not_ignored(schema: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        compile_schema(schema)


def test_dollar_anchors_at_the_very_end_only() -> None:
    pattern = compile_pattern("^[A-Z]+$")
    assert pattern.search("ABC")
    assert not pattern.search("ABC\n")  # Python's plain $ would accept this


def _error(schema: dict[str, Any], value: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        compile_schema(schema)(value)
    return caught.value


@pytest.mark.parametrize(
    ("schema", "value", "path", "problem"),
    [
        ({"type": "string"}, 5, "", "must be a string, not a number"),
        ({"type": ["integer", "null"]}, "x", "", "must be an integer or null, not a string"),
        ({"type": "integer"}, True, "", "must be an integer, not a boolean"),
        ({"type": "number"}, float("nan"), "", "must be a number"),
        ({"properties": {"a": {"type": "integer"}}}, {"a": 1.5}, "a", "must be an integer"),
        ({"required": ["a"]}, {}, "a", "is required"),
        (
            {"properties": {"a": {"items": {"maxLength": 1}}}},
            {"a": ["x", "yy"]},
            "a[1]",
            "is 2 characters long; the limit is 1",
        ),
        (
            {
                "properties": {
                    "e": {"propertyNames": {"pattern": "^[A-Z]+$", "errorMessage": "upper case"}}
                }
            },
            {"e": {"ok": 1}},
            "e.ok",
            "upper case",
        ),
        (
            {"properties": {"c": {"additionalProperties": False, "properties": {"x": {}}}}},
            {"c": {"y": 1}},
            "c.y",
            "is not an allowed field here",
        ),
        ({"enum": ["a", "b"]}, "c", "", 'is "c"; must be one of: a, b'),
        ({"enum": [1, "a"]}, True, "", "must be one of"),
        ({"const": 0}, False, "", "must be 0"),
        ({"const": 0}, 0.0, None, None),
        ({"minimum": 2}, 1, "", "is 1; must be at least 2"),
        ({"maximum": 10_000}, 10_001, "", "is 10,001; must be at most 10,000"),
        ({"minItems": 1}, [], "", "must not be empty"),
        ({"maxProperties": 1}, {"a": 1, "b": 2}, "", "has 2 entries; the limit is 1"),
        ({"pattern": "^[^\\u0000]*$"}, "a\x00", "", "does not match the pattern"),
        ({"pattern": "^[^\\u0000]*$"}, "a\n", None, None),
        ({"not": {"type": "null"}, "errorMessage": "needed"}, None, "", "needed"),
        (
            {
                "if": {"properties": {"k": {"const": "x"}}, "required": ["k"]},
                "then": {"required": ["y"]},
            },
            {"k": "x"},
            "y",
            "is required",
        ),
        (
            {
                "if": {"properties": {"k": {"const": "x"}}, "required": ["k"]},
                "then": {"required": ["y"]},
            },
            {"k": "z"},
            None,
            None,
        ),
        (
            {"if": {"minLength": 2}, "then": {"pattern": "^a"}, "else": {"pattern": "^b"}},
            "xy",
            "",
            "does not match",
        ),
        (
            {"if": {"minLength": 2}, "then": {"pattern": "^a"}, "else": {"pattern": "^b"}},
            "b",
            None,
            None,
        ),
        ({"allOf": [{"minLength": 2}, {"maxLength": 3}]}, "abcd", "", "the limit is 3"),
    ],
)
def test_checks_and_messages(
    schema: dict[str, Any], value: Any, path: str | None, problem: str | None
) -> None:
    if problem is None:
        compile_schema(schema)(value)
        return
    error = _error(schema, value)
    assert error.path == path
    assert problem in error.problem


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (None, None, True),
        ("a", "a", True),
        ([1, {"a": 2}], [1.0, {"a": 2}], True),
        ({"a": 1}, {"b": 1}, False),
        ([1], [1, 2], False),
    ],
)
def test_json_equality(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        ((), ""),
        (("targets", 3), "targets[3]"),
        (("env", "FOO"), "env.FOO"),
        (("a", 0, "b"), "a[0].b"),
    ],
)
def test_paths_read_like_code(parts: tuple[str | int, ...], path: str) -> None:
    assert format_path(parts) == path


@given(
    st.text(alphabet="AZaz09+/=\x00\n-_", max_size=14)
    | st.text(alphabet="0123456789abcdefA\n", min_size=62, max_size=66)
)
def test_fast_pattern_checks_match_their_regex(text: str) -> None:
    for pattern in (_NO_NUL_PATTERN, _BASE64_PATTERN, _SHA256_PATTERN):
        validate = compile_schema({"pattern": pattern})
        try:
            validate(text)
            accepted = True
        except SchemaError:
            accepted = False
        assert accepted == (compile_pattern(pattern).search(text) is not None), (pattern, text)
