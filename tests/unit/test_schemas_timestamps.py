"""parse_timestamp's shape trick against the definition it stands for.

The schema files define a timestamp by a pattern (the `date-time` format is an annotation), and
the codec adds one rule: it names a real instant (README, `date-time`). parse_timestamp does not
run the pattern on valid input: it checks the characters' shape and lets fromisoformat check the
ranges and the calendar. `reference` below is the definition, written from first principles
(the schema file's pattern, then datetime's constructor); every test holds the two together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import schemas
from schemas import SchemaError, format_timestamp, now_timestamp, parse_timestamp
from schemas.timestamps import check_timestamps
from tests.support.contract import instant

# The schema file's pattern, with ECMA-262's `$` (end of input, never before a final newline).
PATTERN: Final = schemas.load_schema("request")["$defs"]["timestamp"]["pattern"]
_PATTERN: Final = re.compile(PATTERN.removesuffix("$") + r"\Z")

Verdict = tuple[str, datetime | None]  # ("ok", the UTC instant) or (rule, None)


def reference(text: str) -> Verdict:
    if not _PATTERN.search(text):
        return ("pattern", None)
    found = instant(text)
    return ("ok", found) if found is not None else ("date-time", None)


def verdict(parse: Callable[[str, str], datetime], text: str) -> Verdict:
    try:
        parsed = parse(text, "at")
    except SchemaError as error:
        refused = error
    else:
        assert parsed.tzinfo is UTC
        return ("ok", parsed)
    assert refused.path == "at"
    return (refused.rule, None)


EDGES: list[tuple[str, str, datetime | None]] = [
    ("2024-05-01T12:00:00Z", "ok", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00.5Z", "ok", datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)),
    ("2024-05-01T12:00:00.123456789Z", "ok", datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)),
    ("2024-05-01T14:00:00+02:00", "ok", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T06:30:00-05:30", "ok", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00-00:00", "ok", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00+23:59", "ok", datetime(2024, 4, 30, 12, 1, tzinfo=UTC)),
    ("2024-02-29T00:00:00Z", "ok", datetime(2024, 2, 29, tzinfo=UTC)),
    ("0001-01-01T00:00:00-01:00", "ok", datetime(1, 1, 1, 1, tzinfo=UTC)),
    ("9999-12-31T23:59:59+01:00", "ok", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
    # Refused by the pattern.
    ("2024-05-01T24:00:00Z", "pattern", None),  # hour 24
    ("2024-05-01T12:00:60Z", "pattern", None),  # leap second
    ("2024-05-01T12:60:00Z", "pattern", None),
    ("2024-05-01T12:00:00+05:60", "pattern", None),  # fromisoformat takes this offset
    ("2024-05-01T12:00:00+24:00", "pattern", None),
    ("2024-05-01T12:00:00.1234567890Z", "pattern", None),  # 10 fraction digits
    ("2024-05-01T12:00:00.Z", "pattern", None),
    ("2024-05-01t12:00:00Z", "pattern", None),
    ("2024-05-01T12:00:00z", "pattern", None),
    ("2024-05-01 12:00:00Z", "pattern", None),
    ("2024-05-01T12:00:00Z ", "pattern", None),
    (" 2024-05-01T12:00:00Z", "pattern", None),
    ("2024-05-01T12:00:00Z\n", "pattern", None),  # ECMA `$`
    ("2024-05-01T12:00:00+0200", "pattern", None),
    ("2024-05-01T12:00:00+02", "pattern", None),
    ("2024-05-01T12:00:00", "pattern", None),  # no time zone
    ("2024-05-01T12:00Z", "pattern", None),
    ("20240501T120000Z", "pattern", None),
    ("+2024-05-01T12:00:00Z", "pattern", None),
    ("02024-05-01T12:00:00Z", "pattern", None),
    ("٢٠٢٤-05-01T12:00:00Z", "pattern", None),  # Arabic-Indic digits
    ("2024-05-0٣T12:00:00Z", "pattern", None),
    ("２０２４-05-01T12:00:00Z", "pattern", None),  # fullwidth digits
    ("2024-13-01T12:00:00Z", "pattern", None),
    ("2024-05-00T12:00:00Z", "pattern", None),
    ("", "pattern", None),
    # Shaped right, but no such instant.
    ("0000-01-01T00:00:00Z", "date-time", None),
    ("0001-01-01T00:00:00+01:00", "date-time", None),  # before year 1 once in UTC
    ("9999-12-31T23:59:59-01:00", "date-time", None),  # after year 9999 once in UTC
    ("2023-02-29T12:00:00Z", "date-time", None),
    ("2024-02-30T12:00:00Z", "date-time", None),
    ("2024-04-31T12:00:00Z", "date-time", None),
]


@pytest.mark.parametrize(("text", "rule", "expected"), EDGES, ids=[e[0] for e in EDGES])
def test_edges(text: str, rule: str, expected: datetime | None) -> None:
    assert reference(text) == (rule, expected)  # the reference says what the table says...
    assert verdict(parse_timestamp, text) == (rule, expected)  # ...and so does the codec


def test_messages_say_what_is_wrong() -> None:
    with pytest.raises(SchemaError, match="must be an RFC 3339 date-time with a time zone"):
        parse_timestamp("2024-05-01T12:00:00z", "at")
    with pytest.raises(SchemaError, match='"2023-02-29T12:00:00Z" is not a real date and time'):
        parse_timestamp("2023-02-29T12:00:00Z", "at")
    with pytest.raises(SchemaError, match="out of range once converted to UTC"):
        parse_timestamp("0001-01-01T00:00:00+01:00", "at")


def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


# Strings near the shape: every part drawn from a little past its valid range, separators and
# zones from what other writers produce (lowercase, space, "+0200", 10+ fraction digits).
NEAR = st.builds(
    lambda *parts: "".join(parts),
    st.integers(0, 9999).map(lambda n: f"{n:04d}") | st.sampled_from(["202", "02024", "٢٠٢٤"]),
    st.sampled_from(["-"]),
    _two(0, 19),
    st.sampled_from(["-"]),
    _two(0, 39),
    st.sampled_from(["T", "T", "T", "t", " ", "_"]),
    _two(0, 29),
    st.sampled_from([":"]),
    _two(0, 69),
    st.sampled_from([":", ":", ""]),
    _two(0, 69),
    st.just("") | st.integers(0, 12).map(lambda n: "." + "7" * n),
    st.sampled_from(["Z", "Z", "z", "", "+", "-"]),
    st.just("") | st.tuples(_two(0, 29), st.sampled_from([":", ":", ""]), _two(0, 69)).map("".join),
)
VALID = st.from_regex(_PATTERN, fullmatch=True)


@st.composite
def _edited(draw: st.DrawFn) -> str:
    """A pattern-valid timestamp with one character inserted, replaced or removed."""
    text: str = draw(VALID)
    at = draw(st.integers(0, len(text)))
    char: str = draw(st.sampled_from("0123456789٣２-:Ttz Z+.\n\x00é"))
    how = draw(st.sampled_from(["insert", "replace", "remove"]))
    if how == "insert":
        return text[:at] + char + text[at:]
    if how == "replace":
        return text[:at] + char + text[at + 1 :]
    return text[:at] + text[at + 1 :]


TIMESTAMPS = VALID | NEAR | _edited()
SETTINGS = settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(TIMESTAMPS)
@example("2024-05-01T12:00:00+05:60")
@example("1999-12-31T23:59:59.999999999-23:59")
def test_shape_trick_agrees_with_pattern_and_calendar(text: str) -> None:
    assert verdict(parse_timestamp, text) == reference(text)


def _both(first: str, second: str) -> list[Verdict]:
    """What parse_timestamp says of two timestamps in turn, up to the first refusal."""
    out = []
    for text in (first, second):
        found = reference(text)
        out.append(found)
        if found[0] != "ok":
            break
    return out


def _check_pair(first: str, second: str) -> list[Verdict]:
    try:
        check_timestamps(first, "started_at", second, "finished_at")
    except SchemaError as error:
        refused = error
    else:
        return [("ok", instant(first)), ("ok", instant(second))]
    if refused.path == "started_at":
        return [(refused.rule, None)]
    assert refused.path == "finished_at"
    return [("ok", instant(first)), (refused.rule, None)]


@settings(SETTINGS, max_examples=600)
@given(TIMESTAMPS, TIMESTAMPS)
def test_checking_a_pair_agrees_with_checking_each(first: str, second: str) -> None:
    assert _check_pair(first, second) == _both(first, second)


@settings(max_examples=300, deadline=None)
@given(VALID, VALID, st.data())
def test_a_pair_written_together_only_splits_one_way(a: str, b: str, data: st.DataObject) -> None:
    # check_timestamps tests the shape of both strings joined; cut the same characters anywhere
    # else and it must still refuse what is not two timestamps (an empty first one included).
    joined = a + b
    at = data.draw(st.integers(0, len(joined)))
    first, second = joined[:at], joined[at:]
    assert _check_pair(first, second) == _both(first, second)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        # Fixed offsets: zoneinfo's gaps and folds make aware == say False by design (PEP 495).
        timezones=st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    )
)
def test_formatted_timestamps_parse_back_to_the_same_instant(dt: datetime) -> None:
    text = format_timestamp(dt)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert reference(text)[0] == "ok"
    assert parse_timestamp(text) == dt


def test_format_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        format_timestamp(datetime(2024, 5, 1))


def test_format_writes_utc_with_z_and_microseconds() -> None:
    local = datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(local) == "2024-05-01T12:00:00.000001Z"


def test_now_is_a_contract_timestamp() -> None:
    text = now_timestamp()
    assert reference(text)[0] == "ok"
    assert text.endswith("Z")
    # A minute either way: the wall clock may be stepped while the test runs.
    assert abs(parse_timestamp(text) - datetime.now(UTC)) < timedelta(minutes=1)
