"""Building blocks of the compiled validators (schemas/validator.py): type tests and patterns.

compile_pattern reads a `pattern` as JSON Schema does (ECMA-262). fast_check gives, for the
patterns the contract applies to long or frequent strings, an exactly equivalent test that scans
in C instead of running the regex engine (equivalence is property-tested in
test_schemas_validator).
"""

from __future__ import annotations

import math
import re
from typing import Any

from schemas.errors import SchemaDefinitionError

_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "integer": "(type({v}) is int or _is_integer({v}))",
    "number": "(type({v}) is int or (type({v}) is float and {v} - {v} == 0.0) or _is_number({v}))",
    "boolean": "({v} is True or {v} is False)",
    "null": "{v} is None",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
}


def _is_integer(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# Python's \d \w \s \b match non-ASCII characters, ECMA-262's do not: refuse them so every
# language reads each pattern the same way.
_NON_PORTABLE = re.compile(r"\\[dDwWsSbB]")
_NO_NUL_PATTERN = "^[^\\u0000]*$"
# Base64: n alphabet characters then p <= 2 '=' with (n + p) % 4 == 0 is the same language as
# the padded grammar.
_BASE64_PATTERN = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_BASE64_SHAPE = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")
# 64 characters, each a lowercase hex digit: ASCII whose bytes translate() deletes entirely.
_SHA256_PATTERN = "^[0-9a-f]{64}$"
_HEX_DIGITS = b"0123456789abcdef"

# pattern -> (a test that is true when `{v}` does NOT match, the constant it names as `{c}`)
_FAST_CHECKS: dict[str, tuple[str, Any]] = {
    _NO_NUL_PATTERN: ("'\\x00' in {v}", None),
    _SHA256_PATTERN: (
        "len({v}) != 64 or not {v}.isascii() or {v}.encode().translate(None, {c})",
        _HEX_DIGITS,
    ),
    _BASE64_PATTERN: ("len({v}) % 4 or {c}({v}) is None", _BASE64_SHAPE.match),
}


def fast_check(pattern: str) -> tuple[str, Any] | None:
    """(failure test on `{v}`, constant `{c}`) exactly equivalent to `pattern`, or None."""
    return _FAST_CHECKS.get(pattern)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an ECMA-262 pattern the way JSON Schema reads it (unanchored search)."""
    if _NON_PORTABLE.search(pattern):
        raise SchemaDefinitionError(
            f"pattern {pattern!r} uses a class that differs across languages"
        )
    body = pattern
    # Python's $ also matches before a final newline; JSON Schema's does not.
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1] + r"\Z"
    if re.search(r"(?<!\\)\$", body):
        raise SchemaDefinitionError(f"pattern {pattern!r}: '$' is only supported at the end")
    return re.compile(body)
