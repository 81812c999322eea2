"""Keeps the results table's time partitions: create ahead and on demand, drop past retention.

The plan is made by sink/periods.py (pure); this module reads the catalog and runs the DDL in
one transaction under a transaction-level advisory lock, so sinks and `fleetrun migrate` never
race on the same partition. lock_timeout keeps a DROP from stalling inserts behind it: on a
busy table maintenance gives up and tries again next round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sink import periods
from sink.migrate import act_as_owner
from sink.periods import Partition, Period, Plan, Window
from sink.settings import SinkSettings

log = logging.getLogger("fleetrun.sink.partitions")

PARTITION_LOCK: Final = int.from_bytes(b"fleetrpt", "big") & 0x7FFF_FFFF_FFFF_FFFF
_LIST = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'results'::regclass
"""
_LOCK_TIMEOUT = "5s"


Conn = asyncpg.Connection | PoolConnectionProxy


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class MaintenanceReport:
    """What one maintenance round changed."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    dead_letters_deleted: int = 0


class Partitions:
    """Partition maintenance for one sink (or one migrate run), with a cache of what exists."""

    def __init__(
        self, settings: SinkSettings, clock: Callable[[], datetime] = utcnow, timeout_s: float = 60
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.timeout_s = timeout_s
        self._covered: set[Period] = set()  # periods known to have a partition

    def window(self, now: datetime | None = None) -> Window:
        """The finished_at range partitions are kept for, as of `now`."""
        s = self.settings
        return Window.at(now or self.clock(), s.retention_days, s.partition_ahead_days)

    def covers(self, lo: datetime, hi: datetime) -> bool:
        """True when results finished between lo and hi are known to have partitions."""
        needed = periods.periods_between(lo, hi, self.settings.partition_interval)
        return all(p in self._covered for p in needed)

    async def ensure(self, conn: Conn, lo: datetime, hi: datetime) -> None:
        """Make sure results finished between lo and hi have partitions, where retention allows.

        The hot path: one set lookup per period when the partitions are already known.
        """
        needed = periods.periods_between(lo, hi, self.settings.partition_interval)
        missing = [p for p in needed if p not in self._covered]
        if not missing:
            return
        window = self.window()
        wanted = [p for p in missing if window.keeps(p)]
        if wanted:
            await self.maintain(conn, wanted=wanted)
            # The plan covers every wanted period (with day-sized gap fillers if need be).
            self._covered.update(wanted)

    async def maintain(
        self,
        conn: Conn,
        *,
        now: datetime | None = None,
        wanted: Iterable[Period] = (),
    ) -> MaintenanceReport:
        """Create partitions ahead (and `wanted` ones), drop expired ones, prune dead letters."""
        s = self.settings
        now = now or self.clock()
        report = MaintenanceReport()
        async with conn.transaction():
            # Bounds are rendered in the session's time zone; UTC makes them parseable.
            await conn.execute(
                f"SET LOCAL TimeZone = 'UTC'; SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'",
                timeout=self.timeout_s,
            )
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK, timeout=self.timeout_s
            )
            # Partitions belong to the owner of `results` (fleetrun_owner), whoever logged in.
            await act_as_owner(conn, "results", self.timeout_s)
            existing = await self._existing(conn)
            todo: Plan = periods.plan(
                existing,
                now,
                interval=s.partition_interval,
                retention_days=s.retention_days,
                ahead_days=s.partition_ahead_days,
                wanted=wanted,
            )
            for period in todo.create:
                await conn.execute(periods.create_sql(period), timeout=self.timeout_s)
                report.created.append(period.name)
            for part in todo.drop:
                await conn.execute(periods.drop_sql(part), timeout=self.timeout_s)
                report.dropped.append(part.name)
            if s.dead_letter_retention_days > 0:
                status = await conn.execute(
                    "DELETE FROM dead_letters WHERE dead_at < $1",
                    now - timedelta(days=s.dead_letter_retention_days),
                    timeout=self.timeout_s,
                )
                report.dead_letters_deleted = int(status.rsplit(" ", 1)[-1])
            dropped = {p.period for p in todo.drop}
            kept = [p.period for p in existing if p.period not in dropped]
        self._remember([*kept, *todo.create])
        if report.created or report.dropped or report.dead_letters_deleted:
            log.info(
                "partitions maintained",
                extra={
                    "partitions_created": ",".join(report.created) or "-",
                    "partitions_dropped": ",".join(report.dropped) or "-",
                    "dead_letters_deleted": report.dead_letters_deleted,
                },
            )
        return report

    async def _existing(self, conn: Conn) -> list[Partition]:
        rows = await conn.fetch(_LIST, timeout=self.timeout_s)
        found = [periods.parse_bound(row[0], row[1] or "") for row in rows]
        return [p for p in found if p is not None]

    def _remember(self, present: Iterable[Period]) -> None:
        """Rebuild the cache: every period of the configured interval that these cover."""
        interval = self.settings.partition_interval
        self._covered.clear()
        for period in present:
            for sub in periods.periods_between(
                period.lower, period.upper - timedelta(microseconds=1), interval
            ):
                if period.lower <= sub.lower and sub.upper <= period.upper:
                    self._covered.add(sub)
            self._covered.add(period)
