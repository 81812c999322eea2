"""Timestamps as the contract writes them (RFC 3339 text) and as Python reads them (aware UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from schemas.errors import SchemaError
from schemas.fields import TIMESTAMP

_fromisoformat: Final = datetime.fromisoformat
# The pattern's shape with every digit written 0: which characters go where. fromisoformat then
# checks every range the pattern states (month 01-12, hour 00-23, ...) and the calendar, except
# an offset's minutes past 59, checked apart. Together they test what TIMESTAMP's pattern does,
# at a third of its cost; test_schemas_timestamps checks they agree.
_ZERO_DIGITS: Final = bytes.maketrans(b"123456789", b"000000000")
_SHAPES: Final = frozenset(
    f"0000-00-00T00:00:00{fraction}{zone}".encode()
    for fraction in ["", *("." + "0" * n for n in range(1, 10))]
    for zone in ("Z", "+00:00", "-00:00")
)
# Two shapes written one after the other split only one way (each ends at its Z or offset), so
# a result's two timestamps are checked with one lookup.
_SHAPE_PAIRS: Final = frozenset(a + b for a in _SHAPES for b in _SHAPES)


def parse_timestamp(text: str, path: str = "") -> datetime:
    """The aware UTC datetime of a contract timestamp. SchemaError with rule `pattern` when it
    is not RFC 3339 as the schema writes it, `date-time` when it names no real instant (30
    February; a year outside 1-9999 once in UTC)."""
    if (
        text.isascii()
        and text.encode().translate(_ZERO_DIGITS) in _SHAPES
        and (text[-1] == "Z" or text[-2] in "012345")
    ):
        try:
            dt = _fromisoformat(text)
            return dt if dt.tzinfo is UTC else dt.astimezone(UTC)
        except ValueError:
            pass
        except OverflowError:
            raise SchemaError(
                path, f'"{text}" is out of range once converted to UTC', "date-time"
            ) from None
    if not TIMESTAMP.matches(text):
        raise SchemaError(path, TIMESTAMP.message, "pattern")
    raise SchemaError(path, f'"{text}" is not a real date and time', "date-time")


def check_timestamps(first: str, first_path: str, second: str, second_path: str) -> None:
    """parse_timestamp's checks for two timestamps at once (a result's start and finish: the
    sink's hot path); SchemaError for the first one that fails."""
    # The try costs nothing when nothing is raised. The pair's shape does not say where it
    # splits: a first (or second) of 0 or 1 characters ("" and two timestamps) has no [-2]
    # (IndexError), and text built in code may hold a surrogate (UnicodeEncodeError, a
    # ValueError). fromisoformat refuses any split but the real one.
    try:
        if (
            (first + second).encode().translate(_ZERO_DIGITS) in _SHAPE_PAIRS
            and (first[-1] == "Z" or first[-2] in "012345")
            and (second[-1] == "Z" or second[-2] in "012345")
            and _fromisoformat(first).tzinfo is UTC
            and _fromisoformat(second).tzinfo is UTC
        ):
            return
    except (ValueError, IndexError):
        pass
    parse_timestamp(first, first_path)  # the slower way, which names what is wrong
    parse_timestamp(second, second_path)


def format_timestamp(dt: datetime) -> str:
    """`dt` as the contract writes it: UTC, microseconds, upper-case T and Z."""
    if dt.utcoffset() is None:
        raise ValueError("a naive datetime has no time zone; use e.g. datetime.now(UTC)")
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_timestamp() -> str:
    """The current time as the contract writes it."""
    return format_timestamp(datetime.now(UTC))
