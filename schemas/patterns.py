"""The schema files' `pattern`s, checked by the records themselves rather than by msgspec.

msgspec can check a pattern (`Meta(pattern=...)`), but each check costs about twice a direct
regex call, and a result has a dozen patterned strings: that alone would use the sink's whole
decode budget (bench/REPORT.md, "Codec"). So the field types in schemas.fields carry their
pattern as a `Pattern` marker (msgspec ignores it), and each record's `__post_init__` calls
`check_patterns`, which reads the markers once per record type and then, per record:
- tests "no NUL" with `in` (what the pattern `^[^\\u0000]*$` means, at C speed);
- remembers values that matched (bounded): the results of one request repeat its request_id,
  labels and collector, the hosts of a fleet recur, and most stderr digests are the empty one.
Lengths, ranges and enumerations stay msgspec `Meta`, checked in C while decoding.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final, Literal, NamedTuple, Union

from schemas.errors import SchemaError

_REMEMBERED: Final = 8_192  # matching values kept per pattern; the set restarts when full
_REMEMBER_CHARS: Final = 256  # longer values are checked every time, never kept


def python_pattern(pattern: str) -> str:
    """A schema file's (ECMA-262) pattern as Python's re reads it the same way."""
    # Python's $ also matches before a final newline; ECMA-262's does not.
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


@dataclass(frozen=True, eq=False)
class Pattern:
    """A field's pattern exactly as its schema file writes it, and what a person reads when a
    value does not match. `remember=False` for values that never repeat (timestamps)."""

    source: str
    message: str
    remember: bool = True
    rule: str = field(default="pattern", init=False)  # the keyword a failure reports
    is_no_nul: bool = field(init=False, repr=False)
    _regex: re.Pattern[str] = field(init=False, repr=False)
    # Values known to match (bounded); read directly by Result, whose checks are inlined.
    matched: set[str] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_no_nul", self.source == NO_NUL_SOURCE)
        object.__setattr__(self, "_regex", re.compile(python_pattern(self.source)))

    def matches(self, value: str) -> bool:
        """True when `value` matches (JSON Schema's unanchored search, ECMA-262 `$`)."""
        if self.is_no_nul:
            return "\x00" not in value
        if value in self.matched:
            return True
        if self._regex.search(value) is None:
            return False
        if self.remember and len(value) <= _REMEMBER_CHARS:
            if len(self.matched) >= _REMEMBERED:
                self.matched.clear()
            self.matched.add(value)
        return True

    def all_match(self, values: Iterable[str]) -> bool:
        """True when every value matches; one C-level test in the common cases."""
        if self.is_no_nul:
            return "\x00" not in "".join(values)
        if self.matched.issuperset(values):
            return True
        return all(self.matches(v) for v in values)


@dataclass(frozen=True, eq=False)
class NotPattern(Pattern):
    """A pattern a value must NOT match (the schema file's `not: {"pattern": …}`), e.g. the
    environment names a request may not set; `matched` holds values known to be allowed."""

    rule: str = field(default="not", init=False)

    def matches(self, value: str) -> bool:
        if value in self.matched:
            return True
        if self._regex.search(value) is not None:
            return False
        if self.remember and len(value) <= _REMEMBER_CHARS:
            if len(self.matched) >= _REMEMBERED:
                self.matched.clear()
            self.matched.add(value)
        return True


NO_NUL_SOURCE: Final = "^[^\\u0000]*$"

# How a plan reads the strings a pattern applies to: several required fields at once, one
# field that may be absent (None or UNSET), or the keys, values or items of a container field.
Where = Literal["fields", "optional", "keys", "values", "items"]


class Check(NamedTuple):
    pattern: Pattern
    where: Where
    names: tuple[str, ...]
    get: Callable[[Any], Any]


def plan(record_type: type[Any]) -> tuple[Check, ...]:
    """The checks for every patterned string of `record_type`: required fields grouped by
    pattern (one test each group), the others one by one, in field order."""
    hints = typing.get_type_hints(record_type, include_extras=True)
    grouped: dict[int, list[str]] = {}
    patterns: dict[int, Pattern] = {}
    checks: list[Check] = []
    for name in record_type.__struct_fields__:
        annotation = hints[name]
        for where, pattern in _patterns(annotation, "fields"):
            if where == "fields" and _optional(annotation):
                checks.append(Check(pattern, "optional", (name,), attrgetter(name)))
            elif where == "fields":
                grouped.setdefault(id(pattern), []).append(name)
                patterns[id(pattern)] = pattern
            else:
                checks.append(Check(pattern, where, (name,), attrgetter(name)))
    for key, names in grouped.items():
        get = attrgetter(*names) if len(names) > 1 else _one(names[0])
        checks.insert(0, Check(patterns[key], "fields", tuple(names), get))
    return tuple(checks)


def _one(name: str) -> Callable[[Any], tuple[Any]]:
    get = attrgetter(name)
    return lambda record: (get(record),)


def _optional(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return False
    members = typing.get_args(annotation)
    return type(None) in members or any(getattr(m, "__name__", "") == "UnsetType" for m in members)


def _patterns(annotation: Any, where: Where) -> list[tuple[Where, Pattern]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extras = typing.get_args(annotation)
        found = [(where, e) for e in extras if isinstance(e, Pattern)]
        return found + _patterns(inner, where)
    if origin in (Union, types.UnionType):
        return [p for member in typing.get_args(annotation) for p in _patterns(member, where)]
    if origin is dict:
        key, value = typing.get_args(annotation)
        return _patterns(key, "keys") + _patterns(value, "values")
    if origin is tuple:
        return _patterns(typing.get_args(annotation)[0], "items")
    return []


def check_patterns(record: Any, checks: tuple[Check, ...]) -> None:
    """Raise SchemaError (rule `pattern`) for a value in `record` that breaks its field's
    pattern; the path names the field or entry (`labels.-team`, `targets[2]`)."""
    for pattern, where, names, get in checks:
        value = get(record)
        if where == "fields":
            ok = pattern.all_match(value)
        elif where == "optional":
            ok = type(value) is not str or pattern.matches(value)
        elif where == "keys":
            ok = not value or pattern.all_match(value)
        elif where == "values":
            ok = not value or pattern.all_match(value.values())
        else:
            ok = type(value) is not tuple or pattern.all_match(value)
        if not ok:
            raise _culprit(record, pattern, where, names)


def _culprit(record: Any, pattern: Pattern, where: Where, names: tuple[str, ...]) -> SchemaError:
    for name in names:
        value = getattr(record, name)
        if where in ("fields", "optional") and not pattern.matches(value):
            return SchemaError(name, pattern.message, pattern.rule)
        if where in ("keys", "values"):
            for key, item in value.items():
                if not pattern.matches(key if where == "keys" else item):
                    return SchemaError(f"{name}.{key}", pattern.message, pattern.rule)
        if where == "items":
            for index, item in enumerate(value):
                if not pattern.matches(item):
                    return SchemaError(f"{name}[{index}]", pattern.message, pattern.rule)
    raise AssertionError("a pattern check failed but no value breaks it")  # pragma: no cover
