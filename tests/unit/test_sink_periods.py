"""Time partitions of results: which exist, which to create ahead, which to drop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sink.periods import (
    Partition,
    Period,
    Window,
    create_sql,
    drop_sql,
    parse_bound,
    period_of,
    periods_between,
    plan,
)

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "interval", "lower", "upper"),
    [
        (utc(2026, 3, 10, 23, 59), "daily", utc(2026, 3, 10), utc(2026, 3, 11)),
        (utc(2026, 12, 31, 12), "daily", utc(2026, 12, 31), utc(2027, 1, 1)),
        # 01:00 at +05:00 is the previous UTC day
        (
            datetime(2026, 3, 10, 1, tzinfo=timezone(timedelta(hours=5))),
            "daily",
            utc(2026, 3, 9),
            utc(2026, 3, 10),
        ),
        (utc(2026, 3, 10), "weekly", utc(2026, 3, 9), utc(2026, 3, 16)),  # Monday to Monday
        (utc(2026, 2, 28), "monthly", utc(2026, 2, 1), utc(2026, 3, 1)),
        (utc(2026, 12, 5), "monthly", utc(2026, 12, 1), utc(2027, 1, 1)),
    ],
)
def test_period_of(ts: datetime, interval: str, lower: datetime, upper: datetime) -> None:
    assert period_of(ts, interval) == Period(lower, upper)


@given(
    ts=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
    ),
    interval=st.sampled_from(["daily", "weekly", "monthly"]),
)
def test_a_period_holds_its_moment_and_periods_tile(ts: datetime, interval: str) -> None:
    p = period_of(ts, interval)
    assert p.lower <= ts < p.upper
    assert period_of(p.upper, interval).lower == p.upper
    assert p.name == f"results_p{p.lower:%Y%m%d}"


def test_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="hourly"):
        period_of(NOW, "hourly")


def _existing(*days: int) -> list[Partition]:
    out = []
    for day in days:
        p = period_of(NOW + timedelta(days=day), "daily")
        out.append(Partition(p.name, p))
    return out


def test_plan_creates_today_and_the_days_ahead_that_are_missing() -> None:
    todo = plan(_existing(0, 1), NOW, interval="daily", retention_days=30, ahead_days=3)
    assert [p.name for p in todo.create] == ["results_p20260312", "results_p20260313"]
    assert todo.drop == ()


def test_plan_drops_partitions_wholly_older_than_retention() -> None:
    existing = _existing(-31, -30, -29, 0, 1, 2, 3)
    todo = plan(existing, NOW, interval="daily", retention_days=30, ahead_days=3)
    # The partition of day -30 still holds moments younger than 30 days: it stays.
    assert [p.name for p in todo.drop] == ["results_p20260207"]
    assert todo.create == ()
    assert plan(existing, NOW, interval="daily", retention_days=0, ahead_days=3).drop == ()


def test_wanted_periods_are_created_only_within_the_window() -> None:
    old = period_of(NOW - timedelta(days=10), "daily")
    expired = period_of(NOW - timedelta(days=40), "daily")
    far = period_of(NOW + timedelta(days=30), "daily")
    todo = plan(
        _existing(0, 1),
        NOW,
        interval="daily",
        retention_days=30,
        ahead_days=1,
        wanted=[old, expired, far],
    )
    assert todo.create == (old,)
    window = Window.at(NOW, 30, 1)
    assert [window.keeps(p) for p in (old, expired, far)] == [True, False, False]


def test_switching_to_weekly_fills_gaps_day_by_day_next_to_daily_partitions() -> None:
    todo = plan(_existing(0), NOW, interval="weekly", retention_days=0, ahead_days=0)
    # The week of NOW (Mon 9 March) overlaps the daily partition of 10 March.
    assert [p.name for p in todo.create] == [
        "results_p20260309",
        *(f"results_p202603{d}" for d in range(11, 16)),
    ]
    assert all(p.upper - p.lower == timedelta(days=1) for p in todo.create)


def test_periods_between_covers_both_ends() -> None:
    got = periods_between(utc(2026, 3, 1, 5), utc(2026, 3, 3), "daily")
    assert [p.lower.day for p in got] == [1, 2, 3]


def test_catalog_bounds_are_parsed_and_sql_is_written_in_utc() -> None:
    bound = "FOR VALUES FROM ('2026-03-10 00:00:00+00') TO ('2026-03-11 00:00:00+00')"
    part = parse_bound("results_p20260310", bound)
    assert part == Partition("results_p20260310", Period(utc(2026, 3, 10), utc(2026, 3, 11)))
    assert parse_bound("results_default", "DEFAULT") is None
    assert parse_bound("x", "FOR VALUES FROM ('nope') TO ('2026-03-11')") is None
    assert create_sql(part.period) == (
        "CREATE TABLE IF NOT EXISTS results_p20260310 PARTITION OF results FOR VALUES "
        "FROM ('2026-03-10T00:00:00+00:00') TO ('2026-03-11T00:00:00+00:00')"
    )
    assert drop_sql(Partition('we"ird', part.period)) == 'DROP TABLE IF EXISTS "we""ird"'
