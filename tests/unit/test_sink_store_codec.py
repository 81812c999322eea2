"""The sink's timestamptz codec gives PostgreSQL the same microseconds asyncpg's own would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sink.store import _timestamptz_in, _timestamptz_out

AWARE = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11))]
    ),
)


@pytest.mark.parametrize(
    ("value", "microseconds"),
    [
        (datetime(2000, 1, 1, tzinfo=UTC), 0),
        (datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 1),
        (datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), -1),
        (datetime(2000, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), 0),
        # 8,887 days (six leap days) + 12:00:01.25
        (datetime(2024, 5, 1, 12, 0, 1, 250_000, tzinfo=UTC), 767_880_001_250_000),
    ],
)
def test_known_instants(value: datetime, microseconds: int) -> None:
    assert _timestamptz_out(value) == (microseconds,)


@given(AWARE)
def test_every_aware_instant_round_trips_as_utc(value: datetime) -> None:
    back = _timestamptz_in(_timestamptz_out(value))
    assert back == value
    assert back.tzinfo is UTC


def test_infinities_decode_as_asyncpg_decodes_them() -> None:
    assert _timestamptz_in((2**63 - 1,)) == datetime.max
    assert _timestamptz_in((-(2**63),)) == datetime.min


@pytest.mark.parametrize("value", [datetime(2024, 5, 1), datetime(2024, 5, 1).date(), "2024"])
def test_anything_but_an_aware_datetime_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        _timestamptz_out(value)  # type: ignore[arg-type]
