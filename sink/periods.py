"""Time partitions of the results table: which to create and which to drop. Pure.

`results` is partitioned by RANGE on finished_at, one partition per UTC day (or week, or
month). The sink keeps partitions from the retention horizon up to `ahead_days` in the future:
it creates them ahead at start and periodically, on demand when a batch holds older results
that are still within retention, and drops partitions whose whole range is older than
retention. A result outside that window has no partition, so the database refuses it and it
goes to the dead letters with the reason, rather than disappearing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

TABLE: Final = "results"
# pg_get_expr(relpartbound) for our partitions, read with TimeZone=UTC.
_BOUND = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One partition's range [lower, upper) of finished_at."""

    lower: datetime
    upper: datetime

    @property
    def name(self) -> str:
        return f"{TABLE}_p{self.lower:%Y%m%d}"


@dataclass(frozen=True, slots=True)
class Partition:
    """A partition that exists: its table name and range."""

    name: str
    period: Period


@dataclass(frozen=True, slots=True)
class Plan:
    """What maintenance does: partitions to create and to drop."""

    create: tuple[Period, ...]
    drop: tuple[Partition, ...]


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def period_of(ts: datetime, interval: str) -> Period:
    """The period holding `ts` (aware; read in UTC)."""
    day = ts.astimezone(UTC).date()
    if interval == "daily":
        start, end = day, day + timedelta(days=1)
    elif interval == "weekly":  # ISO weeks: Monday to Monday
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif interval == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown partition interval {interval!r}")
    return Period(_midnight(start), _midnight(end))


def periods_between(lo: datetime, hi: datetime, interval: str) -> list[Period]:
    """Every period that holds a moment of [lo, hi]."""
    out = []
    period = period_of(lo, interval)
    while period.lower <= hi:
        out.append(period)
        period = period_of(period.upper, interval)
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """The finished_at range the sink keeps partitions for."""

    horizon: datetime | None  # partitions wholly before it are dropped; None keeps all
    ahead: datetime  # partitions are created up to the one holding this moment

    @classmethod
    def at(cls, now: datetime, retention_days: int, ahead_days: int) -> Window:
        horizon = now - timedelta(days=retention_days) if retention_days > 0 else None
        return cls(horizon, now + timedelta(days=ahead_days))

    def keeps(self, period: Period) -> bool:
        """Whether a partition for `period` belongs in the window (not wholly expired)."""
        return (self.horizon is None or period.upper > self.horizon) and period.lower <= self.ahead


def plan(
    existing: Iterable[Partition],
    now: datetime,
    *,
    interval: str,
    retention_days: int,
    ahead_days: int,
    wanted: Iterable[Period] = (),
) -> Plan:
    """Create the periods from now's to `ahead_days` ahead (and `wanted` ones still within
    retention) that no partition covers; drop partitions wholly older than retention."""
    window = Window.at(now, retention_days, ahead_days)
    current = list(existing)
    covered = [p.period for p in current]
    needed = set(periods_between(now, window.ahead, interval))
    needed.update(p for p in wanted if window.keeps(p))
    create: list[Period] = []
    for period in sorted(needed):
        if not any(_overlaps(period, c) for c in covered):
            create.append(period)
            covered.append(period)
            continue
        # Partly covered: the interval was changed while older partitions exist. Fill the gaps
        # day by day (every partition starts and ends at a UTC midnight), so no day is left
        # without a partition.
        last = period.upper - timedelta(microseconds=1)
        for day in periods_between(period.lower, last, "daily"):
            if not any(_overlaps(day, c) for c in covered):
                create.append(day)
                covered.append(day)
    drop = tuple(
        sorted(
            (p for p in current if window.horizon and p.period.upper <= window.horizon),
            key=lambda p: p.period,
        )
    )
    return Plan(tuple(sorted(create)), drop)


def _overlaps(a: Period, b: Period) -> bool:
    return a.lower < b.upper and b.lower < a.upper


def parse_bound(name: str, bound: str) -> Partition | None:
    """A partition from its name and pg_get_expr(relpartbound) text, or None if not ours."""
    m = _BOUND.search(bound)
    if m is None:
        return None  # a DEFAULT partition or one an operator attached with other bounds
    try:
        lower = datetime.fromisoformat(m.group(1))
        upper = datetime.fromisoformat(m.group(2))
    except ValueError:
        return None
    if lower.tzinfo is None or upper.tzinfo is None:
        return None
    return Partition(name, Period(lower.astimezone(UTC), upper.astimezone(UTC)))


def create_sql(period: Period) -> str:
    """DDL for one partition; bounds are written in UTC so they read the same everywhere."""
    return (
        f"CREATE TABLE IF NOT EXISTS {period.name} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ('{period.lower.isoformat()}') TO ('{period.upper.isoformat()}')"
    )


def drop_sql(partition: Partition) -> str:
    """DDL to drop one partition (its name comes from the catalog, quoted)."""
    return 'DROP TABLE IF EXISTS "{}"'.format(partition.name.replace('"', '""'))
